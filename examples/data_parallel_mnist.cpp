// The seed's CNN on Fashion-MNIST, trained data-parallel, the way the seed's Keras example uses a
// MirroredStrategy: every replica holds the whole model and takes its share of each global batch;
// gradients are averaged across replicas before one identical Adam step on each.
//
//   data_parallel_mnist [--replicas N]                     N replicas as threads of this process
//   mpirun -np N data_parallel_mnist                       one replica per MPI process
//
// It takes fashion_mnist_cnn's flags (--batch is the global batch) and the reducer's:
// --bucket-kib N (gradient bucket size), --deterministic (bit-reproducible sums whatever MPI
// does), --compression bf16|fp16 (16-bit buckets with error feedback). Only rank 0 prints and
// writes files; --json adds the replica count, the backend and where the step time went.

#include "fashion_cnn.hpp"

#if TENSORTAPE_HAS_MPI
#include <tensortape/dist/mpi.hpp>
#endif

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

namespace tt = tensortape;
namespace nn = tensortape::nn;
namespace dist = tensortape::dist;

namespace {

// Whether mpirun/mpiexec (Open MPI, MPICH or a PMIx launcher) started this process.
bool launched_by_mpi() {
    for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"})
        if (std::getenv(v)) return true;
    return false;
}

dist::DataParallelOptions reducer_options(const example::Args& args) {
    dist::DataParallelOptions o;
    if (args.bucket_kib > 0) o.bucket_bytes = o.first_bucket_bytes = static_cast<std::size_t>(args.bucket_kib) * 1024;
    o.deterministic = args.deterministic;
    o.compression = args.compression == "bf16" ? dist::Compression::bf16 : args.compression == "fp16" ? dist::Compression::fp16 : dist::Compression::none;
    return o;
}

// One replica: the same program on every rank; `data` is shared (read-only) by thread replicas.
void train_replica(dist::Communicator& comm, const example::Args& args, const tt::data::MnistData<float>& mnist) {
    const bool lead = comm.rank() == 0;
    auto train = mnist.train;
    if (args.limit > 0 && args.limit < train.size()) train = train.slice(0, args.limit);
    if (lead)
        std::printf("data: %lld training images (%lld for validation), %lld test images, from %s\n", static_cast<long long>(train.size()),
                    static_cast<long long>(train.size() / 5), static_cast<long long>(mnist.test.size()), args.data.c_str());

    // Every rank builds the model; DataParallel then copies rank 0's weights to all of them.
    auto model = example::make_cnn(args.seed);
    dist::DataParallel<float> dp(comm, model->named_parameters(), reducer_options(args));
    if (lead)
        std::printf("%s\n%lld parameters; %d replicas (%s), global batch %lld, %d kernel threads each, %zu gradient bucket(s)%s%s\n",
                    model->describe().c_str(), static_cast<long long>(model->parameter_count()), comm.size(), comm.backend(),
                    static_cast<long long>(args.batch), tt::num_threads(), dp.bucket_plan().size(), args.deterministic ? ", deterministic" : "",
                    args.compression != "none" ? (", " + args.compression + " compression").c_str() : "");

    tt::optim::Adam<float> adam(model->parameters(), 1e-3);
    const nn::Loss<float> loss = nn::SparseCategoricalCrossentropy<float>{.from_logits = true};
    auto early = std::make_shared<tt::train::EarlyStopping<float>>(
        tt::train::EarlyStopping<float>::Options{.monitor = "val_loss", .patience = 3, .restore_best_weights = true});
    auto memory = std::make_shared<example::MemoryLog>();
    tt::train::FitOptions<float> fit{.epochs = args.epochs, .batch_size = args.batch, .validation_split = 0.2, .seed = args.seed};
    fit.callbacks = {early, memory};
    fit.data_parallel = &dp;
    if (launched_by_mpi()) fit.terminal = false;  // mpirun hands out terminals; logs read better by line

    const auto history = tt::train::fit(*model, adam, loss, train, fit);
    // The replicas are identical: rank 0 evaluates and reports for all.
    if (!lead) return;
    const auto test = tt::train::evaluate(*model, loss, mnist.test);
    std::printf("test accuracy: %.4f (loss %.4f, %lld images)%s\n", test.accuracy, test.loss, static_cast<long long>(test.examples),
                history.stopped_early ? ", stopped early" : "");

    const auto& s = dp.stats();
    double seconds = 0, examples = 0;
    for (const auto& e : history.epochs) seconds += e.at("seconds"), examples += e.at("examples_per_second") * e.at("seconds");
    const double step_ms = s.steps ? 1e3 * seconds / double(s.steps) : 0.0;
    std::printf("%.1f ms per step of %lld examples (%.0f examples/s, training only); gradient reduction %.2f ms per step, "
                "%.0f%% of it hidden behind backward\n",
                step_ms, static_cast<long long>(args.batch), seconds > 0 ? examples / seconds : 0.0,
                s.steps ? 1e3 * s.comm_seconds / double(s.steps) : 0.0, 100 * s.hidden_fraction());
    if (!args.save.empty()) {
        tt::train::save_weights(*model, args.save);
        std::printf("weights saved to %s\n", args.save.c_str());
    }
    if (!args.json.empty())
        example::write_json(args.json, history, memory->rss, test,
                            {{"replicas", std::to_string(comm.size())},
                             {"backend", "\"" + std::string(comm.backend()) + "\""},
                             {"threads_per_replica", std::to_string(tt::num_threads())},
                             {"batch", std::to_string(args.batch)},
                             {"deterministic", args.deterministic ? "true" : "false"},
                             {"compression", "\"" + args.compression + "\""},
                             {"steps", std::to_string(s.steps)},
                             {"ms_per_step", std::to_string(step_ms)},
                             {"reduce_ms_per_step", std::to_string(s.steps ? 1e3 * s.comm_seconds / double(s.steps) : 0.0)},
                             {"reduce_wait_ms_per_step", std::to_string(s.steps ? 1e3 * s.wait_seconds / double(s.steps) : 0.0)},
                             {"hidden_fraction", std::to_string(s.hidden_fraction())}});
}

}  // namespace

int main(int argc, char** argv) {
    const example::Args args =
        example::parse(argc, argv, "data_parallel_mnist", "Trains the seed's CNN on Fashion-MNIST with data-parallel replicas.", true);
    const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    try {
        if (launched_by_mpi()) {
#if TENSORTAPE_HAS_MPI
            dist::MpiCommunicator comm(MPI_COMM_WORLD, &argc, &argv);
            // The processes on one machine share its cores.
            tt::set_num_threads(args.threads > 0 ? args.threads : std::max(1, cores / comm.local_size()));
            const auto mnist = tt::data::load_mnist<float>(args.data);
            train_replica(comm, args, mnist);
            comm.barrier();
            return 0;
#else
            std::fprintf(stderr, "data_parallel_mnist: started by mpirun, but built without MPI (install libopenmpi-dev and reconfigure)\n");
            return 1;
#endif
        }
        // Thread replicas share the kernel thread pool; each gets its share of the cores.
        tt::set_num_threads(args.threads > 0 ? args.threads : std::max(1, cores / args.replicas));
        const auto mnist = tt::data::load_mnist<float>(args.data);
        dist::run_replicas(args.replicas, [&](dist::Communicator& comm) { train_replica(comm, args, mnist); });
    } catch (const tt::error& e) {
        std::fprintf(stderr, "%s\n", e.what());
        return 1;
    }
    return 0;
}
