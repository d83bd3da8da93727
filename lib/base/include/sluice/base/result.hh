#pragma once
/// @file
/// `sluice::result<T>`: a value or an error, returned across module boundaries instead of
/// exceptions (STYLE C1; C++20 has no std::expected). Control-plane only: the data path
/// returns counts and verdicts, never a result holding a std::string.

#include <string>
#include <utility>
#include <variant>

namespace sluice {

/// An error with a human message. `where` optionally names the file:line, object or field
/// path the error is about, so callers can print "where: message".
struct error {
    std::string message;
    std::string where;

    [[nodiscard]] std::string to_string() const
    {
        return where.empty() ? message : where + ": " + message;
    }
};

/// Builds an error; `return sluice::err("bad thing");` converts into any result<T>.
inline error err(std::string message, std::string where = {})
{
    return error{std::move(message), std::move(where)};
}

template <typename T>
class [[nodiscard]] result {
public:
    result(T value) : _v(std::in_place_index<0>, std::move(value)) {}
    result(error e) : _v(std::in_place_index<1>, std::move(e)) {}

    [[nodiscard]] bool ok() const noexcept { return _v.index() == 0; }
    explicit operator bool() const noexcept { return ok(); }

    T& value() & { return std::get<0>(_v); }
    const T& value() const& { return std::get<0>(_v); }
    T&& value() && { return std::get<0>(std::move(_v)); }
    T* operator->() { return &std::get<0>(_v); }
    const T* operator->() const { return &std::get<0>(_v); }
    T& operator*() & { return std::get<0>(_v); }
    const T& operator*() const& { return std::get<0>(_v); }

    const error& err() const { return std::get<1>(_v); }

private:
    std::variant<T, error> _v;
};

template <>
class [[nodiscard]] result<void> {
public:
    result() = default;
    result(error e) : _e(std::move(e)), _failed(true) {}

    [[nodiscard]] bool ok() const noexcept { return !_failed; }
    explicit operator bool() const noexcept { return ok(); }
    const error& err() const { return _e; }

private:
    error _e;
    bool _failed = false;
};

/// `return sluice::ok();` for result<void>.
inline result<void> ok()
{
    return {};
}

} // namespace sluice
