// SPDX-License-Identifier: BSD-2-Clause
#include "priv/hook.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "uring/system_clock.hpp"
#include "tests/priv/test_support.hpp"

namespace {

using mlvpn::test::MemorySink;
using mlvpn::test::TempDir;

using mlvpn::core::Level;
using mlvpn::priv::HookEvent;
using mlvpn::priv::HookRunner;
using namespace std::chrono_literals;

std::string write_script(const TempDir& dir, const std::string& body) {
    std::string path = dir / "hook.sh";
    std::ofstream(path) << "#!/bin/sh\n" << body;
    REQUIRE(::chmod(path.c_str(), 0700) == 0);
    return path;
}

std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> out;
    std::string cur;
    for (char c : s) {
        if (c == sep) {
            out.push_back(cur);
            cur.clear();
        } else {
            cur += c;
        }
    }
    if (!cur.empty()) out.push_back(cur);
    return out;
}

std::vector<std::string> test_env() {
    return {"DEVICE=mlvpn0", "MTU=1400", "IP4=10.42.43.1/30", "IP6=", "IP4_GATEWAY=10.42.43.2", "IP6_GATEWAY=",
            "IP4_ROUTES=", "IP6_ROUTES=", std::string("PATH=") + std::string(mlvpn::priv::kHookPath)};
}

// The event loop as priv runs it: poll the runner's fds until its deadline,
// then service it. Returns how long it took to become idle.
mlvpn::core::Duration run_loop(HookRunner& runner, mlvpn::core::Duration limit) {
    mlvpn::uring::SystemClock clock;
    auto start = clock.now();
    while (!runner.idle() && clock.now() - start < limit) {
        auto now = clock.now();
        runner.service(now);
        if (runner.idle()) break;
        std::vector<pollfd> pfds;
        for (int fd : runner.fds()) pfds.push_back(pollfd{fd, POLLIN, 0});
        auto wake = std::min(runner.deadline(), start + limit);
        int ms = wake <= now ? 0 : static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(wake - now).count());
        ::poll(pfds.data(), pfds.size(), ms);
    }
    return clock.now() - start;
}

// True once `pid` is gone or a zombie nobody reaped yet.
bool process_gone(pid_t pid) {
    for (int i = 0; i < 100; ++i) {
        std::string stat = slurp("/proc/" + std::to_string(pid) + "/stat");
        auto paren = stat.rfind(')');
        if (stat.empty() || (paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] == 'Z'))
            return true;
        ::usleep(10'000);
    }
    return false;
}

}  // namespace

TEST_CASE("hook: environment and arguments come from priv's configuration") {
    mlvpn::core::Config config;
    config.ip4 = mlvpn::core::IpPrefix{};
    config.ip4->text = "10.42.43.1/30";
    config.ip4_gateway = mlvpn::core::IpAddress{};
    config.ip4_gateway->text = "10.42.43.2";
    config.ip6 = mlvpn::core::IpPrefix{};
    config.ip6->text = "fd00::1/64";
    config.ip4_routes_text = "0.0.0.0/1 128.0.0.0/1";
    CHECK(mlvpn::priv::hook_environment(config, "mlvpn0", 1400) ==
          std::vector<std::string>{"DEVICE=mlvpn0", "MTU=1400", "IP4=10.42.43.1/30", "IP6=fd00::1/64",
                                   "IP4_GATEWAY=10.42.43.2", "IP6_GATEWAY=", "IP4_ROUTES=0.0.0.0/1 128.0.0.0/1",
                                   "IP6_ROUTES=",
                                   "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"});

    mlvpn::core::Config empty;
    CHECK(mlvpn::priv::hook_environment(empty, "tun7", 1280) ==
          std::vector<std::string>{"DEVICE=tun7", "MTU=1280", "IP4=", "IP6=", "IP4_GATEWAY=", "IP6_GATEWAY=",
                                   "IP4_ROUTES=", "IP6_ROUTES=",
                                   "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"});

    CHECK(mlvpn::priv::hook_args("mlvpn0", HookEvent::TuntapUp) == std::vector<std::string>{"mlvpn0", "tuntap_up"});
    CHECK(mlvpn::priv::hook_args("mlvpn0", HookEvent::TuntapDown) ==
          std::vector<std::string>{"mlvpn0", "tuntap_down"});
    CHECK(mlvpn::priv::hook_args("mlvpn0", HookEvent::RtunUp, "dsl1") ==
          std::vector<std::string>{"mlvpn0", "rtun_up", "dsl1"});
    CHECK(mlvpn::priv::hook_args("mlvpn0", HookEvent::RtunDown, "dsl1") ==
          std::vector<std::string>{"mlvpn0", "rtun_down", "dsl1"});
}

TEST_CASE("hook: the hook gets exactly its argv and environment, no fds and a clean signal state") {
    TempDir dir;
    std::string out = dir / "out";
    // The signal state is read first, with shell builtins only: while dash
    // forks a command it blocks all signals for a moment.
    std::string script = write_script(
        dir, "while IFS= read -r line; do case \"$line\" in Sig[BI][lg][kn]:*) printf '%s\\n' \"$line\";; "
             "esac; done < /proc/$$/status > " + out + ".sig\n" +
             "printf '%s\\n' \"$0\" \"$@\" > " + out + ".argv\n" +
             "cat /proc/$$/environ > " + out + ".env\n" +
             "ls /proc/self/fd > " + out + ".fds\n" +
             "readlink /proc/$$/fd/0 > " + out + ".stdin\n");

    // What a careless priv could leak: a variable, an fd without O_CLOEXEC,
    // a blocked signal and an ignored one.
    REQUIRE(::setenv("MLVPN_HOOK_TEST_LEAK", "1", 1) == 0);
    int leaky = ::open("/dev/null", O_RDONLY);
    REQUIRE(leaky >= 0);
    sigset_t usr1, old_mask;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    REQUIRE(::sigprocmask(SIG_BLOCK, &usr1, &old_mask) == 0);
    struct sigaction ign {}, old_pipe{};
    ign.sa_handler = SIG_IGN;
    REQUIRE(::sigaction(SIGPIPE, &ign, &old_pipe) == 0);

    MemorySink sink;
    mlvpn::core::Logger log(sink, Level::Debug);
    {
        HookRunner runner(script, test_env(), log);
        runner.enqueue({"mlvpn0", "rtun_up", "dsl1"});
        CHECK(runner.drain(10s, mlvpn::uring::SystemClock()));
    }

    ::sigprocmask(SIG_SETMASK, &old_mask, nullptr);
    ::sigaction(SIGPIPE, &old_pipe, nullptr);
    ::close(leaky);
    ::unsetenv("MLVPN_HOOK_TEST_LEAK");

    CHECK(split(slurp(out + ".argv"), '\n') == std::vector<std::string>{script, "mlvpn0", "rtun_up", "dsl1"});
    CHECK(split(slurp(out + ".env"), '\0') == test_env());
    CHECK(slurp(out + ".fds") == "0\n1\n2\n3\n");  // 3 is ls's own directory fd
    CHECK(slurp(out + ".stdin") == "/dev/null\n");
    auto sig = split(slurp(out + ".sig"), '\n');
    REQUIRE(sig.size() == 2);
    CHECK(sig[0] == "SigBlk:\t0000000000000000");
    REQUIRE(sig[1].rfind("SigIgn:\t", 0) == 0);
    // glibc's posix_spawn (2.36) leaves its two internal signals, 32 and 33
    // (below SIGRTMIN, used by no program), ignored in the child; nothing
    // else may be.
    uint64_t ignored = std::stoull(sig[1].substr(8), nullptr, 16);
    CHECK((ignored & ~((uint64_t{1} << 31) | (uint64_t{1} << 32))) == 0);
    CHECK(sink.has(Level::Debug, "hook rtun_up dsl1 exited with status 0"));
    CHECK_FALSE(sink.contains("timed out"));
}

TEST_CASE("hook: output lines go to the log and a non-zero exit is reported") {
    TempDir dir;
    std::string script = write_script(dir, "echo hello\n"
                                           "echo 'to stderr' >&2\n"
                                           "printf 'crlf\\r\\n'\n"
                                           "printf 'no newline at the end'\n"
                                           "exit 3\n");
    MemorySink sink;
    mlvpn::core::Logger log(sink, Level::Debug);
    HookRunner runner(script, test_env(), log);
    runner.enqueue({"mlvpn0", "rtun_up", "dsl1"});
    run_loop(runner, 10s);
    REQUIRE(runner.idle());
    INFO(sink.dump());
    CHECK(sink.has(Level::Info, "hook: hello"));
    CHECK(sink.has(Level::Info, "hook: to stderr"));
    CHECK(sink.has(Level::Info, "hook: crlf"));
    CHECK(sink.has(Level::Info, "hook: no newline at the end"));
    CHECK(sink.has(Level::Warning, "hook rtun_up dsl1 exited with status 3"));
}

TEST_CASE("hook: long output lines are split") {
    TempDir dir;
    std::string script = write_script(dir, "head -c 2500 /dev/zero | tr '\\0' x\n");
    MemorySink sink;
    mlvpn::core::Logger log(sink, Level::Debug);
    HookRunner runner(script, test_env(), log);
    runner.enqueue({"mlvpn0", "tuntap_up"});
    run_loop(runner, 10s);
    std::vector<std::size_t> sizes;
    for (const auto& e : sink.entries)
        if (e.text.rfind("hook: ", 0) == 0) sizes.push_back(e.text.size() - 6);
    CHECK(sizes == std::vector<std::size_t>{1024, 1024, 452});
}

TEST_CASE("hook: runs happen one at a time, in queue order") {
    TempDir dir;
    std::string order = dir / "order";
    std::string lock = dir / "lock";
    std::string script = write_script(dir, "mkdir " + lock + " || echo overlap >> " + order + "\n" +
                                               "echo \"$2 $3\" >> " + order + "\n" + "sleep 0.05\n" + "rmdir " +
                                               lock + "\n");
    MemorySink sink;
    mlvpn::core::Logger log(sink, Level::Debug);
    HookRunner runner(script, test_env(), log);
    CHECK(runner.idle());
    CHECK(runner.deadline() == mlvpn::core::kNever);
    CHECK(runner.fds().empty());

    runner.enqueue(mlvpn::priv::hook_args("mlvpn0", HookEvent::TuntapUp));
    // Queued, not started: the loop is told to call service() at once.
    CHECK_FALSE(runner.idle());
    CHECK(runner.deadline() == mlvpn::core::Time{});
    CHECK(runner.fds().empty());
    runner.enqueue(mlvpn::priv::hook_args("mlvpn0", HookEvent::RtunUp, "dsl1"));
    runner.enqueue(mlvpn::priv::hook_args("mlvpn0", HookEvent::RtunUp, "dsl2"));
    runner.enqueue(mlvpn::priv::hook_args("mlvpn0", HookEvent::RtunDown, "dsl3"));

    mlvpn::uring::SystemClock clock;
    runner.service(clock.now());
    CHECK(runner.fds().size() == 2);  // pidfd and output pipe of the first run
    CHECK(runner.deadline() > clock.now());

    CHECK(runner.drain(20s, clock));
    CHECK(slurp(order) == "tuntap_up \nrtun_up dsl1\nrtun_up dsl2\nrtun_down dsl3\n");
    CHECK(runner.deadline() == mlvpn::core::kNever);
}

TEST_CASE("hook: a burst coalesces: an event that undoes a waiting one cancels it") {
    TempDir dir;
    std::string order = dir / "order";
    std::string script = write_script(dir, "echo \"$2 $3\" >> " + order + "\n");
    MemorySink sink;
    mlvpn::core::Logger log(sink, Level::Notice);
    HookRunner runner(script, test_env(), log);
    mlvpn::uring::SystemClock clock;
    runner.enqueue(mlvpn::priv::hook_args("mlvpn0", HookEvent::RtunDown, "dsl1"));
    runner.service(clock.now());  // running: it is not taken back
    // dsl2 flaps 50 times while the first hook runs, dsl1 comes back and goes.
    for (int i = 0; i < 50; ++i) {
        runner.enqueue(mlvpn::priv::hook_args("mlvpn0", HookEvent::RtunDown, "dsl2"));
        runner.enqueue(mlvpn::priv::hook_args("mlvpn0", HookEvent::RtunUp, "dsl2"));
    }
    runner.enqueue(mlvpn::priv::hook_args("mlvpn0", HookEvent::RtunUp, "dsl1"));
    runner.enqueue(mlvpn::priv::hook_args("mlvpn0", HookEvent::RtunDown, "dsl2"));
    CHECK(runner.drain(20s, clock));
    // dsl1's down ran (it was running); its up, and 50 down/up pairs of dsl2,
    // cancelled out; dsl2's last down remains.
    CHECK(slurp(order) == "rtun_down dsl1\nrtun_up dsl1\nrtun_down dsl2\n");
    CHECK(sink.entries.empty());  // nothing dropped
}

TEST_CASE("hook: a full queue drops the oldest run with a warning") {
    TempDir dir;
    std::string order = dir / "order";
    std::string script = write_script(dir, "echo \"$3\" >> " + order + "\n");
    MemorySink sink;
    mlvpn::core::Logger log(sink, Level::Notice);
    HookRunner runner(script, test_env(), log);
    for (std::size_t i = 0; i < HookRunner::kMaxQueued + 2; ++i)
        runner.enqueue({"mlvpn0", "rtun_up", "l" + std::to_string(i)});
    CHECK(sink.has(Level::Warning, "hook: 64 runs already waiting; dropping the oldest, hook rtun_up l0"));
    CHECK(sink.has(Level::Warning, "hook: 64 runs already waiting; dropping the oldest, hook rtun_up l1"));
    CHECK(sink.entries.size() == 2);

    CHECK(runner.drain(60s, mlvpn::uring::SystemClock()));
    std::string expected;
    for (std::size_t i = 2; i < HookRunner::kMaxQueued + 2; ++i) expected += "l" + std::to_string(i) + "\n";
    CHECK(slurp(order) == expected);
}

TEST_CASE("hook: an overrunning hook and what it started are terminated at the timeout") {
    TempDir dir;
    std::string pidfile = dir / "child.pid";
    std::string script = write_script(dir, "sleep 100 &\necho $! > " + pidfile + "\nwait\n");
    MemorySink sink;
    mlvpn::core::Logger log(sink, Level::Debug);
    HookRunner runner(script, test_env(), log, 300ms);
    runner.enqueue({"mlvpn0", "rtun_up", "dsl1"});
    auto took = run_loop(runner, 10s);
    INFO(sink.dump());
    CHECK(runner.idle());
    CHECK(took >= 300ms);
    CHECK(took < 300ms + HookRunner::kKillGrace);
    CHECK(sink.has(Level::Warning, "hook rtun_up dsl1 timed out after 300 ms; sending SIGTERM"));
    CHECK(sink.has(Level::Warning, "hook rtun_up dsl1 killed by signal 15 (SIGTERM)"));
    pid_t child = std::atoi(slurp(pidfile).c_str());
    REQUIRE(child > 0);
    CHECK(process_gone(child));
}

TEST_CASE("hook: SIGKILL follows when the hook ignores SIGTERM") {
    TempDir dir;
    std::string script = write_script(dir, "trap '' TERM\nsleep 100\n");
    MemorySink sink;
    mlvpn::core::Logger log(sink, Level::Debug);
    HookRunner runner(script, test_env(), log, 200ms);
    runner.enqueue({"mlvpn0", "tuntap_up"});
    auto took = run_loop(runner, 10s);
    INFO(sink.dump());
    CHECK(runner.idle());
    CHECK(took >= 200ms + HookRunner::kKillGrace);
    CHECK(took < 200ms + HookRunner::kKillGrace + 1s);
    CHECK(sink.has(Level::Warning, "hook tuntap_up timed out after 200 ms; sending SIGTERM"));
    CHECK(sink.has(Level::Warning, "hook tuntap_up still running after SIGTERM; sending SIGKILL"));
    CHECK(sink.has(Level::Warning, "hook tuntap_up killed by signal 9 (SIGKILL)"));
}

TEST_CASE("hook: a daemon started by the hook does not hold up the runner") {
    TempDir dir;
    std::string pidfile = dir / "daemon.pid";
    std::string order = dir / "order";
    // The "daemon" keeps the hook's stdout, so the pipe never reaches EOF.
    std::string script =
        write_script(dir, "echo \"$2\" >> " + order + "\nsleep 20 &\necho $! > " + pidfile + "\necho started\n");
    MemorySink sink;
    mlvpn::core::Logger log(sink, Level::Debug);
    HookRunner runner(script, test_env(), log);
    runner.enqueue({"mlvpn0", "tuntap_up"});
    auto took = run_loop(runner, 10s);
    pid_t daemon = std::atoi(slurp(pidfile).c_str());
    if (daemon > 0) ::kill(daemon, SIGKILL);
    INFO(sink.dump());
    CHECK(runner.idle());
    CHECK(took < HookRunner::kOutputGrace + 1s);
    CHECK(sink.has(Level::Info, "hook: started"));
    CHECK(sink.has(Level::Info, "hook tuntap_up: a process it started keeps its output open; no longer reading it"));
    CHECK(sink.has(Level::Debug, "hook tuntap_up exited with status 0"));
}

TEST_CASE("hook: a hook that cannot be run is reported and the queue goes on") {
    TempDir dir;
    MemorySink sink;
    mlvpn::core::Logger log(sink, Level::Debug);
    {
        HookRunner runner(dir / "missing.sh", test_env(), log);
        runner.enqueue({"mlvpn0", "tuntap_up"});
        runner.enqueue({"mlvpn0", "rtun_up", "dsl1"});
        runner.service(mlvpn::uring::SystemClock().now());
        CHECK(runner.idle());
    }
    CHECK(sink.has(Level::Error, "hook tuntap_up: cannot run " + dir / "missing.sh" + ": No such file or directory"));
    CHECK(sink.has(Level::Error, "hook rtun_up dsl1: cannot run " + dir / "missing.sh" + ": No such file or directory"));

    // Refused before it is queued.
    HookRunner runner(dir / "missing.sh", test_env(), log);
    runner.enqueue({"mlvpn0", std::string("rtun_up\0x", 9)});
    CHECK(runner.idle());
    CHECK(sink.has(Level::Error, "hook: refusing a run with a NUL byte in an argument"));
}

TEST_CASE("hook: destroying the runner kills and reaps a running hook") {
    TempDir dir;
    std::string pidfile = dir / "hook.pid";
    std::string script = write_script(dir, "echo $$ > " + pidfile + ".tmp\nmv " + pidfile + ".tmp " + pidfile +
                                               "\nexec sleep 100\n");
    MemorySink sink;
    mlvpn::core::Logger log(sink, Level::Debug);
    pid_t pid = 0;
    {
        HookRunner runner(script, test_env(), log);
        runner.enqueue({"mlvpn0", "tuntap_down"});
        mlvpn::uring::SystemClock clock;
        runner.service(clock.now());
        REQUIRE_FALSE(runner.idle());
        // A drain shorter than the hook gives up and says so.
        CHECK_FALSE(runner.drain(100ms, clock));
        for (int i = 0; i < 500 && !std::filesystem::exists(pidfile); ++i) ::usleep(10'000);
        pid = std::atoi(slurp(pidfile).c_str());
        REQUIRE(pid > 0);
    }
    // Reaped by the runner: no such process, not even a zombie.
    CHECK(::kill(pid, 0) == -1);
    CHECK(errno == ESRCH);
    CHECK(sink.has(Level::Warning, "hook tuntap_down still running at shutdown; killing it"));
}
