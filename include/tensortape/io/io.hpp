#pragma once
// Umbrella header for checkpoint files: safetensors (named tensors plus string metadata) and
// NumPy's .npy (one array).

#include <tensortape/io/common.hpp>
#include <tensortape/io/npy.hpp>
#include <tensortape/io/safetensors.hpp>
