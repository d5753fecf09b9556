#pragma once
// Umbrella header of the optimizers: SGD, Adam, AdamW, RMSprop, gradient clipping and
// learning-rate schedulers, in namespace tensortape::optim.

#include <tensortape/optim/adam.hpp>
#include <tensortape/optim/clip.hpp>
#include <tensortape/optim/optimizer.hpp>
#include <tensortape/optim/rmsprop.hpp>
#include <tensortape/optim/schedule.hpp>
#include <tensortape/optim/sgd.hpp>
