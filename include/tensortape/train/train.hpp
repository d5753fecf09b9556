#pragma once
// The training loop, its callbacks and checkpoints.
#include <tensortape/train/callbacks.hpp>
#include <tensortape/train/checkpoint.hpp>
#include <tensortape/train/fit.hpp>
#include <tensortape/train/history.hpp>
#include <tensortape/train/progress.hpp>
