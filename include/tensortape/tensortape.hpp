#pragma once
// Umbrella header: everything a user of tensortape needs.

#include <tensortape/core/allocator.hpp>
#include <tensortape/core/error.hpp>
#include <tensortape/core/print.hpp>
#include <tensortape/core/random.hpp>
#include <tensortape/core/shape.hpp>
#include <tensortape/core/tensor.hpp>
#include <tensortape/core/xtensor.hpp>

#include <tensortape/backend/cpu/thread_pool.hpp>

#include <tensortape/autodiff/engine.hpp>
#include <tensortape/autodiff/eval.hpp>
#include <tensortape/autodiff/expr.hpp>
#include <tensortape/autodiff/var.hpp>

#include <tensortape/ops/elementwise.hpp>
#include <tensortape/ops/matmul.hpp>
#include <tensortape/ops/reduce.hpp>
#include <tensortape/ops/shape.hpp>
#include <tensortape/ops/softmax.hpp>
#include <tensortape/ops/conv.hpp>
#include <tensortape/ops/pool.hpp>
#include <tensortape/ops/linear.hpp>
#include <tensortape/ops/norm.hpp>

#include <tensortape/data/data.hpp>
#include <tensortape/dist/dist.hpp>
#include <tensortape/io/io.hpp>
#include <tensortape/nn/nn.hpp>
#include <tensortape/optim/optim.hpp>
#include <tensortape/train/train.hpp>
