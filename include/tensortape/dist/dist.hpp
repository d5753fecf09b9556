#pragma once
// Data-parallel training: communicators, in-process replicas and the gradient reducer. The MPI
// and NCCL communicators (dist/mpi.hpp, dist/nccl.hpp) are included on their own, since they need
// those libraries.
#include <tensortape/dist/communicator.hpp>
#include <tensortape/dist/compression.hpp>
#include <tensortape/dist/data_parallel.hpp>
#include <tensortape/dist/thread_group.hpp>
