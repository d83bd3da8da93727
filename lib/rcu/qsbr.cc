#include "sluice/rcu/qsbr.hh"

#include <cstdlib>
#include <thread>

#include <rte_common.h>

namespace sluice::rcu {

result<std::unique_ptr<qsbr_domain>> qsbr_domain::create(unsigned max_readers)
{
    if (max_readers == 0 || max_readers > RTE_MAX_LCORE) {
        return err("QSBR domain needs 1.." + std::to_string(RTE_MAX_LCORE) + " readers");
    }
    const size_t sz = rte_rcu_qsbr_get_memsize(max_readers);
    void* mem = std::aligned_alloc(RTE_CACHE_LINE_SIZE, RTE_ALIGN_CEIL(sz, RTE_CACHE_LINE_SIZE));
    if (mem == nullptr) {
        return err("out of memory for a QSBR domain");
    }
    auto* v = static_cast<rte_rcu_qsbr*>(mem);
    if (rte_rcu_qsbr_init(v, max_readers) != 0) {
        std::free(mem);
        return err("rte_rcu_qsbr_init failed");
    }
    std::unique_ptr<qsbr_domain> d(new qsbr_domain());
    d->_v = v;
    d->_max = max_readers;
    return d;
}

qsbr_domain::~qsbr_domain()
{
    std::free(_v);
}

result<void> qsbr_domain::register_reader(unsigned id)
{
    if (id >= _max) {
        return err("reader id " + std::to_string(id) + " out of range");
    }
    if (rte_rcu_qsbr_thread_register(_v, id) != 0) {
        return err("cannot register reader " + std::to_string(id));
    }
    rte_rcu_qsbr_thread_online(_v, id);
    return ok();
}

void qsbr_domain::unregister_reader(unsigned id) noexcept
{
    rte_rcu_qsbr_thread_offline(_v, id);
    rte_rcu_qsbr_thread_unregister(_v, id);
}

bool qsbr_domain::wait(uint64_t token, std::chrono::milliseconds timeout) noexcept
{
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!check(token)) {
        if (std::chrono::steady_clock::now() >= deadline) {
            return false;
        }
        std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    return true;
}

} // namespace sluice::rcu
