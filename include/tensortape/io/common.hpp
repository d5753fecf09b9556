#pragma once
// What the checkpoint formats share: io_error, element sizes, positioned reads of a whole file
// and atomic writes. Files go through POSIX calls rather than iostreams because an atomic save
// needs fsync and rename-over-target, and iostreams offer neither nor report why a call failed.

#include <tensortape/core/error.hpp>
#include <tensortape/core/tensor.hpp>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace tensortape::io {

// A file that cannot be read or written, or whose contents break its format.
class io_error : public tensortape::error {
public:
    using error::error;
};

// Both formats store little-endian IEEE 754 data, and the readers and writers copy the bytes
// unchanged. Every CPU tensortape targets (x86-64, AArch64) is little-endian; a byte-swapping
// path would be code that no machine we test on could exercise, so a big-endian build stops here
// rather than silently reading byte-reversed numbers.
static_assert(std::endian::native == std::endian::little,
              "tensortape::io reads and writes little-endian data without byte swapping");
static_assert(std::numeric_limits<float>::is_iec559 && std::numeric_limits<double>::is_iec559,
              "tensortape::io stores float and double as IEEE 754 binary32 and binary64");

namespace detail {

inline std::size_t itemsize(DType d) {
    switch (d) {
        case DType::f32: return 4;
        case DType::f64: return 8;
        case DType::i32: return 4;
        case DType::i64: return 8;
        case DType::u8: return 1;
    }
    return 0;
}

inline std::string errno_text(int e) { return std::generic_category().message(e); }

// a * b when it does not exceed `limit`; false otherwise (including on overflow).
inline bool mul_within(std::uint64_t a, std::uint64_t b, std::uint64_t limit, std::uint64_t& out) {
    if (a != 0 && b > limit / a) return false;
    out = a * b;
    return out <= limit;
}

// A read-only file read at explicit offsets, so that a reader can check sizes before it reads
// (and allocates for) the bulk of a file.
class InputFile {
public:
    InputFile(std::string_view op, std::string path) : op_(op), path_(std::move(path)) {
        do fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
        while (fd_ < 0 && errno == EINTR);
        if (fd_ < 0) fail<io_error>(op_, "cannot open '", path_, "': ", errno_text(errno));
        struct stat st {};
        if (::fstat(fd_, &st) != 0) {
            const int e = errno;
            ::close(fd_);
            fail<io_error>(op_, "cannot stat '", path_, "': ", errno_text(e));
        }
        if (!S_ISREG(st.st_mode)) {
            ::close(fd_);
            fail<io_error>(op_, "'", path_, "' is not a regular file");
        }
        size_ = static_cast<std::uint64_t>(st.st_size);
    }
    InputFile(const InputFile&) = delete;
    InputFile& operator=(const InputFile&) = delete;
    ~InputFile() { ::close(fd_); }

    std::uint64_t size() const { return size_; }

    // Reads exactly n bytes at `offset`; `what` names them in the error.
    void read_at(void* dst, std::uint64_t n, std::uint64_t offset, std::string_view what) const {
        auto* p = static_cast<char*>(dst);
        std::uint64_t done = 0;
        while (done < n) {
            const std::size_t chunk = static_cast<std::size_t>(std::min<std::uint64_t>(n - done, std::uint64_t(1) << 30));
            const ::ssize_t got = ::pread(fd_, p + done, chunk, static_cast<::off_t>(offset + done));
            if (got < 0 && errno == EINTR) continue;
            if (got < 0)
                fail<io_error>(op_, "file '", path_, "': cannot read ", what, ": ", errno_text(errno));
            // The size was checked against fstat; a short read means the file shrank meanwhile.
            if (got == 0)
                fail<io_error>(op_, "file '", path_, "': ", what, " ends early: read ", done, " of ", n,
                               " bytes at offset ", offset);
            done += static_cast<std::uint64_t>(got);
        }
    }

private:
    std::string op_;
    std::string path_;
    int fd_ = -1;
    std::uint64_t size_ = 0;
};

// Writes a file so that readers see either the old contents or the complete new ones, never a
// partial file: the data goes to a sibling temporary file (same directory, so rename cannot cross
// file systems), is fsynced, then renamed over the target. Destroying a writer that was not
// committed (an exception on the way) removes the temporary file. As with any save by rename,
// the new file gets default permissions (0666 less the umask) rather than the old file's, and a
// symbolic link at the target is replaced, not followed.
class AtomicWriter {
public:
    AtomicWriter(std::string_view op, std::string path) : op_(op), path_(std::move(path)) {
        // pid separates processes; the counter separates threads and successive saves, and a
        // stale temporary left by a crashed process with a recycled pid is skipped by O_EXCL.
        static std::atomic<unsigned> counter{0};
        int e = 0;
        for (int attempt = 0; attempt < 100; ++attempt) {
            tmp_ = path_ + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
            do fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
            while (fd_ < 0 && errno == EINTR);
            if (fd_ >= 0) return;
            e = errno;
            if (e != EEXIST) break;
        }
        fail<io_error>(op_, "cannot write '", path_, "': cannot create temporary file '", tmp_, "': ",
                       errno_text(e));
    }
    AtomicWriter(const AtomicWriter&) = delete;
    AtomicWriter& operator=(const AtomicWriter&) = delete;
    ~AtomicWriter() {
        if (fd_ >= 0) ::close(fd_);
        if (!committed_) ::unlink(tmp_.c_str());
    }

    void write(const void* data, std::uint64_t n) {
        const auto* p = static_cast<const char*>(data);
        while (n > 0) {
            // Linux transfers at most about 2 GiB per call.
            const std::size_t chunk = static_cast<std::size_t>(std::min<std::uint64_t>(n, std::uint64_t(1) << 30));
            const ::ssize_t put = ::write(fd_, p, chunk);
            if (put < 0 && errno == EINTR) continue;
            if (put < 0) failure("write", errno);
            p += put;
            n -= static_cast<std::uint64_t>(put);
        }
    }

    void commit() {
        if (::fsync(fd_) != 0) failure("fsync", errno);
        // close can report a deferred write error (NFS, quotas), so it is checked too.
        const int rc = ::close(fd_);
        fd_ = -1;
        if (rc != 0) failure("close", errno);
        if (std::rename(tmp_.c_str(), path_.c_str()) != 0) {
            const int e = errno;
            fail<io_error>(op_, "cannot write '", path_, "': cannot rename '", tmp_, "' over it: ", errno_text(e));
        }
        committed_ = true;
        // Makes the rename itself durable. The new file is already in place, so a failure here
        // is not reported: throwing would tell the caller the save failed when it did not.
        const std::size_t slash = path_.rfind('/');
        const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path_.substr(0, slash);
        const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            (void)::fsync(dfd);
            ::close(dfd);
        }
    }

private:
    [[noreturn]] void failure(const char* call, int e) {
        fail<io_error>(op_, "cannot write '", path_, "': ", call, " of temporary file '", tmp_, "' failed: ",
                       errno_text(e));
    }

    std::string op_;
    std::string path_;
    std::string tmp_;
    int fd_ = -1;
    bool committed_ = false;
};

// Checks that `s` is well-formed UTF-8 (no overlong forms, surrogates or code points past
// U+10FFFF); returns the offset of the first bad byte, or npos.
inline std::size_t utf8_error_at(std::string_view s) {
    std::size_t i = 0;
    const std::size_t n = s.size();
    while (i < n) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c < 0x80) {
            ++i;
            continue;
        }
        int len;
        std::uint32_t cp, min;
        if ((c & 0xE0) == 0xC0) len = 2, cp = c & 0x1F, min = 0x80;
        else if ((c & 0xF0) == 0xE0) len = 3, cp = c & 0x0F, min = 0x800;
        else if ((c & 0xF8) == 0xF0) len = 4, cp = c & 0x07, min = 0x10000;
        else return i;
        if (i + static_cast<std::size_t>(len) > n) return i;
        for (int k = 1; k < len; ++k) {
            const auto d = static_cast<unsigned char>(s[i + static_cast<std::size_t>(k)]);
            if ((d & 0xC0) != 0x80) return i;
            cp = (cp << 6) | (d & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
        i += static_cast<std::size_t>(len);
    }
    return std::string_view::npos;
}

}  // namespace detail
}  // namespace tensortape::io
