#pragma once
// Umbrella header for the data layer: IDX files, data sets, batching, MNIST.

#include <tensortape/data/dataset.hpp>
#include <tensortape/data/idx.hpp>
