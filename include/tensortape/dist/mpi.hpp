#pragma once
// A communicator over MPI, for replicas in several processes on one or many machines. Needs
// <mpi.h> and the MPI library: link tensortape::mpi (configure with TENSORTAPE_WITH_MPI, the
// default when CMake finds MPI). Not included by tensortape.hpp.
//
// Collectives run on the communicator's progress thread, so MPI is initialised with
// MPI_THREAD_SERIALIZED. Our calls go through a duplicate of the given communicator, so they
// never match the program's own MPI calls by accident.

#include <tensortape/dist/communicator.hpp>

#include <mpi.h>

#include <climits>
#include <cstdlib>
#include <string>

namespace tensortape::dist {

class MpiCommunicator final : public Communicator {
public:
    // Initialises MPI unless the program already did (then it must have asked for at least
    // MPI_THREAD_SERIALIZED); MPI is finalised by the destructor only if it was initialised here.
    explicit MpiCommunicator(MPI_Comm parent = MPI_COMM_WORLD, int* argc = nullptr, char*** argv = nullptr) {
        int initialised = 0;
        MPI_Initialized(&initialised);
        int provided = 0;
        if (!initialised) {
            check(MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided), "MPI_Init_thread");
            owns_mpi_ = true;
        } else {
            MPI_Query_thread(&provided);
        }
        if (provided < MPI_THREAD_SERIALIZED)
            fail<dist_error>("mpi", "MPI provides thread level ", provided, "; the communicator's progress thread needs MPI_THREAD_SERIALIZED (",
                             int(MPI_THREAD_SERIALIZED), ") or more: initialise MPI with MPI_Init_thread");
        check(MPI_Comm_dup(parent, &comm_), "MPI_Comm_dup");
        MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
        MPI_Comm_rank(comm_, &rank_);
        MPI_Comm_size(comm_, &size_);
        MPI_Comm local;
        check(MPI_Comm_split_type(comm_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &local), "MPI_Comm_split_type");
        MPI_Comm_rank(local, &local_rank_);
        MPI_Comm_size(local, &local_size_);
        MPI_Comm_free(&local);
        start();
    }

    ~MpiCommunicator() override {
        if (!stop()) {
            // The progress thread is still inside an MPI call that another rank never joined;
            // finalising would hang, so end the whole job the way MPI ends a failed one.
            std::fprintf(stderr, "tensortape: mpi: %s is still stuck in a collective at shutdown; calling MPI_Abort\n", where().c_str());
            MPI_Abort(comm_, 1);
        }
        MPI_Comm_free(&comm_);
        if (owns_mpi_) {
            int finalised = 0;
            MPI_Finalized(&finalised);
            if (!finalised) MPI_Finalize();
        }
    }

    int rank() const override { return rank_; }
    int size() const override { return size_; }
    const char* backend() const override { return "mpi"; }
    // The rank among the processes of this machine, and how many there are: a process should
    // use about (cores / local_size) compute threads.
    int local_rank() const { return local_rank_; }
    int local_size() const { return local_size_; }
    MPI_Comm handle() const { return comm_; }

protected:
    void execute(const Call& c) override {
        const MPI_Datatype type = mpi_type(c.type);
        const std::size_t esize = size_of(c.type);
        switch (c.op) {
            case Op::all_reduce:
                // MPI counts are int: long buffers go in pieces.
                for (std::size_t i = 0; i < c.count; i += piece) {
                    const int n = static_cast<int>(std::min(piece, c.count - i));
                    check(MPI_Allreduce(MPI_IN_PLACE, static_cast<std::byte*>(c.out) + i * esize, n, type, MPI_SUM, comm_), "MPI_Allreduce");
                }
                break;
            case Op::broadcast:
                for (std::size_t i = 0; i < c.count; i += piece) {
                    const int n = static_cast<int>(std::min(piece, c.count - i));
                    check(MPI_Bcast(static_cast<std::byte*>(c.out) + i * esize, n, type, c.root, comm_), "MPI_Bcast");
                }
                break;
            case Op::all_gather:
                check(MPI_Allgather(c.in, count(c), type, c.out, count(c), type, comm_), "MPI_Allgather");
                break;
            case Op::all_to_all:
                check(MPI_Alltoall(c.in, count(c), type, c.out, count(c), type, comm_), "MPI_Alltoall");
                break;
            case Op::barrier: check(MPI_Barrier(comm_), "MPI_Barrier"); break;
        }
    }

private:
    static constexpr std::size_t piece = std::size_t{1} << 30;

    static MPI_Datatype mpi_type(Type t) {
        switch (t) {
            case Type::f32: return MPI_FLOAT;
            case Type::f64: return MPI_DOUBLE;
            case Type::i64: return MPI_INT64_T;
            case Type::u8: return MPI_UINT8_T;
            case Type::u16: return MPI_UINT16_T;
        }
        return MPI_BYTE;
    }
    static int count(const Call& c) {
        if (c.count > static_cast<std::size_t>(INT_MAX))
            fail<dist_error>(op_name(c.op), c.count, " elements per rank is more than MPI's int count allows");
        return static_cast<int>(c.count);
    }
    void check(int code, const char* what) const {
        if (code == MPI_SUCCESS) return;
        char text[MPI_MAX_ERROR_STRING];
        int len = 0;
        MPI_Error_string(code, text, &len);
        fail<dist_error>("mpi", what, " failed on rank ", rank_, ": ", std::string(text, static_cast<std::size_t>(len)));
    }

    MPI_Comm comm_ = MPI_COMM_NULL;
    int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1;
    bool owns_mpi_ = false;
};

}  // namespace tensortape::dist
