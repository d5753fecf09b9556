#pragma once
// A communicator over NCCL, one GPU per rank. Needs the CUDA runtime and NCCL: link
// tensortape::nccl (configure with TENSORTAPE_WITH_NCCL, the default when CMake finds the CUDA
// toolkit and NCCL). Not included by tensortape.hpp.
//
// Ranks find each other through a bootstrap communicator that already connects them: an
// MpiCommunicator across processes, or a thread group for one process driving several GPUs:
//
//   tt::dist::MpiCommunicator mpi;
//   tt::dist::NcclCommunicator nccl(mpi, mpi.local_rank());   // GPU = rank on this machine
//
// Until the CUDA backend keeps tensors on the GPU, collectives take host buffers and stage them
// through device memory (copy in, NCCL collective, copy out, on the communicator's own stream).
// A timeout aborts the NCCL communicator (ncclCommAbort), which is what releases a rank stuck in
// a collective that another rank never joined; the communicator cannot be used afterwards.

#include <tensortape/dist/communicator.hpp>

#include <cuda_runtime.h>
#include <nccl.h>

#include <atomic>
#include <string>

namespace tensortape::dist {

class NcclCommunicator final : public Communicator {
public:
    NcclCommunicator(Communicator& bootstrap, int device) : rank_(bootstrap.rank()), size_(bootstrap.size()), device_(device) {
        cuda(cudaSetDevice(device_), "cudaSetDevice");
        ncclUniqueId id{};
        if (rank_ == 0) nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
        bootstrap.broadcast(std::span<std::uint8_t>(reinterpret_cast<std::uint8_t*>(&id), sizeof id), 0);
        nccl(ncclCommInitRank(&comm_, size_, id, rank_), "ncclCommInitRank");
        cuda(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
        start();
    }

    ~NcclCommunicator() override {
        stop();
        if (staging_) cudaFree(staging_);
        if (stream_) cudaStreamDestroy(stream_);
        if (comm_ && !aborted_) ncclCommDestroy(comm_);
    }

    int rank() const override { return rank_; }
    int size() const override { return size_; }
    const char* backend() const override { return "nccl"; }
    int device() const { return device_; }

protected:
    void execute(const Call& c) override {
        if (aborted_) fail<dist_error>("nccl", "the communicator was aborted after a timeout and cannot be used");
        // The current device is per thread: set it on the progress thread too.
        cuda(cudaSetDevice(device_), "cudaSetDevice");
        const std::size_t esize = size_of(c.type);
        const std::size_t n = static_cast<std::size_t>(size_);
        switch (c.op) {
            case Op::all_reduce: {
                if (c.type == Type::u8 || c.type == Type::u16) fail<dist_error>("all_reduce", "cannot sum ", type_name(c.type), " elements");
                const std::size_t bytes = c.count * esize;
                void* d = reserve(bytes);
                copy(d, c.out, bytes, cudaMemcpyHostToDevice);
                nccl(ncclAllReduce(d, d, c.count, nccl_type(c.type), ncclSum, comm_, stream_), "ncclAllReduce");
                copy(c.out, d, bytes, cudaMemcpyDeviceToHost);
                break;
            }
            case Op::broadcast: {
                const std::size_t bytes = c.count * esize;
                void* d = reserve(bytes);
                if (rank_ == c.root) copy(d, c.out, bytes, cudaMemcpyHostToDevice);
                nccl(ncclBroadcast(d, d, bytes, ncclUint8, c.root, comm_, stream_), "ncclBroadcast");
                copy(c.out, d, bytes, cudaMemcpyDeviceToHost);
                break;
            }
            case Op::all_gather: {
                const std::size_t bytes = c.count * esize;
                auto* d = static_cast<std::byte*>(reserve(bytes * (n + 1)));
                copy(d, c.in, bytes, cudaMemcpyHostToDevice);
                nccl(ncclAllGather(d, d + bytes, bytes, ncclUint8, comm_, stream_), "ncclAllGather");
                copy(c.out, d + bytes, bytes * n, cudaMemcpyDeviceToHost);
                break;
            }
            case Op::all_to_all: {
                const std::size_t bytes = c.count * esize;
                auto* d = static_cast<std::byte*>(reserve(2 * bytes * n));
                copy(d, c.in, bytes * n, cudaMemcpyHostToDevice);
                nccl(ncclGroupStart(), "ncclGroupStart");
                for (int peer = 0; peer < size_; ++peer) {
                    const std::size_t p = static_cast<std::size_t>(peer);
                    nccl(ncclSend(d + p * bytes, bytes, ncclUint8, peer, comm_, stream_), "ncclSend");
                    nccl(ncclRecv(d + (n + p) * bytes, bytes, ncclUint8, peer, comm_, stream_), "ncclRecv");
                }
                nccl(ncclGroupEnd(), "ncclGroupEnd");
                copy(c.out, d + n * bytes, bytes * n, cudaMemcpyDeviceToHost);
                break;
            }
            case Op::barrier: {
                void* d = reserve(sizeof(float));
                nccl(ncclAllReduce(d, d, 1, ncclFloat32, ncclSum, comm_, stream_), "ncclAllReduce (barrier)");
                break;
            }
        }
        cuda(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
    }

    void on_timeout(const std::string&) override {
        aborted_ = true;
        ncclCommAbort(comm_);
    }

private:
    static ncclDataType_t nccl_type(Type t) {
        switch (t) {
            case Type::f32: return ncclFloat32;
            case Type::f64: return ncclFloat64;
            case Type::i64: return ncclInt64;
            case Type::u8: return ncclUint8;
            case Type::u16: return ncclFloat16;
        }
        return ncclUint8;
    }

    void* reserve(std::size_t bytes) {
        if (bytes > capacity_) {
            if (staging_) cuda(cudaFree(staging_), "cudaFree");
            staging_ = nullptr;
            capacity_ = 0;
            cuda(cudaMalloc(&staging_, bytes), "cudaMalloc");
            capacity_ = bytes;
        }
        return staging_;
    }
    void copy(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind) {
        if (bytes) cuda(cudaMemcpyAsync(dst, src, bytes, kind, stream_), "cudaMemcpyAsync");
    }
    void cuda(cudaError_t e, const char* what) const {
        if (e != cudaSuccess) fail<dist_error>("nccl", what, " failed on rank ", rank_, " (device ", device_, "): ", cudaGetErrorString(e));
    }
    void nccl(ncclResult_t r, const char* what) const {
        if (r != ncclSuccess) fail<dist_error>("nccl", what, " failed on rank ", rank_, " (device ", device_, "): ", ncclGetErrorString(r));
    }

    int rank_, size_, device_;
    ncclComm_t comm_ = nullptr;
    cudaStream_t stream_ = nullptr;
    void* staging_ = nullptr;
    std::size_t capacity_ = 0;
    std::atomic<bool> aborted_{false};
};

}  // namespace tensortape::dist
