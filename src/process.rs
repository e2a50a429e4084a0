//! The one place child processes are created: an environment built from scratch, its own process
//! group, stdin closed (or the prompt, then closed), every inherited descriptor closed at exec,
//! `PR_SET_PDEATHSIG`, the Landlock confinement of its [`CommandSpec`], and a watchdog that kills
//! the whole group on silence or overrun.
//!
//! Live process groups are kept in memory (for shutdown) and, when [`use_registry`] was called,
//! as one file each under the data dir, so a start after a crash or kill -9 can kill the groups the
//! previous run left behind ([`reap_leftovers`]). Must not know what it runs.

use crate::error::{Error, Result};
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A fully described child: what [`capture`] and [`run`] spawn.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandSpec {
    /// The executable.
    pub program: PathBuf,
    /// Arguments.
    pub args: Vec<String>,
    /// The complete environment (nothing else is inherited).
    pub env: Vec<(String, String)>,
    /// The working directory.
    pub cwd: PathBuf,
    /// Bytes written to stdin before it is closed; `None` means stdin is /dev/null.
    pub stdin: Option<String>,
    /// The Landlock allow-list the child runs under; `None` runs it unconfined.
    pub confine: Option<crate::sandbox::Policy>,
}

impl CommandSpec {
    /// `program` with no arguments, an empty environment, in `cwd`, unconfined.
    pub fn new(program: impl Into<PathBuf>, cwd: impl Into<PathBuf>) -> CommandSpec {
        CommandSpec {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: cwd.into(),
            stdin: None,
            confine: None,
        }
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> CommandSpec
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets one variable (replacing an earlier value of the same name).
    pub fn env(mut self, name: &str, value: impl Into<String>) -> CommandSpec {
        let value = value.into();
        match self.env.iter_mut().find(|(k, _)| k == name) {
            Some(entry) => entry.1 = value,
            None => self.env.push((name.to_string(), value)),
        }
        self
    }

    fn label(&self) -> String {
        self.program.display().to_string()
    }
}

/// Captured output of a finished child.
#[derive(Debug)]
pub struct Captured {
    /// Exit code, if it exited normally.
    pub code: Option<i32>,
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard error, lossily decoded.
    pub stderr: String,
}

static LIVE_GROUPS: Mutex<Vec<libc::pid_t>> = Mutex::new(Vec::new());
static REGISTRY: OnceLock<PathBuf> = OnceLock::new();

/// Records every process group from now on as a file in `dir` (created 0700), so the next start
/// can find groups a crash left running. Called once by `serve`.
pub fn use_registry(dir: &Path) -> Result<()> {
    crate::datadir::ensure_private_dir(dir)?;
    let _ = REGISTRY.set(dir.to_path_buf());
    Ok(())
}

/// Kills the process groups a previous run recorded in `dir` and did not reap (it crashed or
/// was killed), then forgets them. A recorded group is killed only while it is provably the same:
/// its leader's start time matches the record, or the leader is gone but members remain (the
/// kernel does not reuse a pid that still names a group). Returns how many groups were killed.
pub fn reap_leftovers(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut killed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let recorded = std::fs::read_to_string(&path).unwrap_or_default();
        let pgid = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<libc::pid_t>().ok())
            .filter(|p| *p > 1);
        if let Some(pgid) = pgid {
            let same = match start_ticks(pgid) {
                Some(ticks) => recorded.trim() == ticks.to_string(),
                // SAFETY: signal 0 only checks whether the group exists.
                None => (unsafe { libc::kill(-pgid, 0) }) == 0,
            };
            // SAFETY: signalling a group this gateway created in a previous run.
            if same && unsafe { libc::kill(-pgid, libc::SIGKILL) } == 0 {
                killed += 1;
            }
        }
        let _ = std::fs::remove_file(&path);
    }
    killed
}

/// Field 22 of `/proc/<pid>/stat`: the start time in clock ticks since boot.
fn start_ticks(pid: libc::pid_t) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from the last `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn register(pgid: libc::pid_t) {
    if let Ok(mut groups) = LIVE_GROUPS.lock() {
        groups.push(pgid);
    }
    if let Some(dir) = REGISTRY.get() {
        let ticks = start_ticks(pgid).map(|t| t.to_string()).unwrap_or_default();
        if let Err(error) = std::fs::write(dir.join(pgid.to_string()), ticks) {
            log::warn!("cannot record process group {pgid}: {error}");
        }
    }
}

fn unregister(pgid: libc::pid_t) {
    if let Ok(mut groups) = LIVE_GROUPS.lock() {
        groups.retain(|g| *g != pgid);
    }
    if let Some(dir) = REGISTRY.get() {
        let _ = std::fs::remove_file(dir.join(pgid.to_string()));
    }
}

/// Spawns `spec` with the given stdout/stderr, registered as a live group.
#[allow(clippy::disallowed_methods)] // The one sanctioned constructor of child processes.
fn spawn(spec: &CommandSpec, output: fn() -> Stdio, keep_stdin: bool) -> Result<Child> {
    let prepared = spec
        .confine
        .as_ref()
        .map(crate::sandbox::Policy::prepare)
        .transpose()?;
    let ruleset = prepared.as_ref().map(crate::sandbox::Prepared::raw_fd);
    let parent = std::process::id() as libc::pid_t;
    let mut command = Command::new(&spec.program);
    command
        .args(&spec.args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&spec.cwd)
        .stdin(if spec.stdin.is_some() || keep_stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(output())
        .stderr(output())
        .process_group(0);
    // SAFETY: the hook runs between fork and exec and only makes async-signal-safe syscalls.
    unsafe {
        command.pre_exec(move || {
            // Nothing the gateway holds open (database, sockets, key files) survives the exec.
            libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
            // The CLI dies with the gateway; the registry catches what it spawned.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0
                || libc::getppid() != parent
            {
                return Err(std::io::Error::other("the gateway is gone"));
            }
            match ruleset {
                Some(fd) => crate::sandbox::apply_in_child(fd),
                None => Ok(()),
            }
        });
    }
    let child = command.spawn().map_err(|e| Error::io(&spec.program, e))?;
    drop(prepared);
    register(child.id() as libc::pid_t);
    Ok(child)
}

/// Writes `input` to the child's stdin on a thread (a large prompt must not deadlock against a
/// child filling its stdout), then closes it.
fn feed_stdin(child: &mut Child, input: Option<&String>) {
    if let (Some(mut pipe), Some(input)) = (child.stdin.take(), input.cloned()) {
        std::thread::spawn(move || {
            use std::io::Write;
            let _ = pipe.write_all(input.as_bytes());
        });
    }
}

/// Runs `spec` to completion, killing its process group if it outlives `timeout`.
///
/// Short helper runs (git, `--version`) go through here: output is read by two threads and the
/// caller waits on their results, so a finished child is noticed at once (no polling interval).
pub fn capture(spec: &CommandSpec, timeout: Duration) -> Result<Captured> {
    let program = spec.label();
    let mut child = spawn(spec, Stdio::piped, false)?;
    let pid = child.id() as libc::pid_t;
    feed_stdin(&mut child, spec.stdin.as_ref());
    let (tx, rx) = std::sync::mpsc::channel::<(usize, String)>();
    let streams = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ];
    for (slot, stream) in streams.into_iter().enumerate() {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut stream) = stream {
                // Bounded: a chatty child cannot grow this without limit.
                let _ = stream.by_ref().take(1024 * 1024).read_to_end(&mut bytes);
            }
            let _ = tx.send((slot, String::from_utf8_lossy(&bytes).into_owned()));
        });
    }
    drop(tx);
    let deadline = Instant::now() + timeout;
    let mut outputs = [String::new(), String::new()];
    let mut timed_out = false;
    for _ in 0..2 {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((slot, text)) => outputs[slot] = text,
            Err(_) => {
                timed_out = true;
                break;
            }
        }
    }
    // Kill the group either way: on timeout to stop it, otherwise to reap grandchildren that
    // outlived it (a process group id is not reused while its leader is unreaped).
    // SAFETY: signalling the process group we created.
    unsafe { libc::kill(-pid, libc::SIGKILL) };
    let status = child.wait().map_err(|e| Error::io(&program, e));
    unregister(pid);
    let status = status?;
    if timed_out {
        return Err(Error::Unavailable {
            code: "timeout",
            message: format!("{program} did not finish within {} s", timeout.as_secs()),
        });
    }
    let [stdout, stderr] = outputs;
    Ok(Captured {
        code: status.code(),
        stdout,
        stderr,
    })
}

/// Bounds of one CLI run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    /// Kill the run when neither pipe produced a byte for this long.
    pub stall: Option<Duration>,
    /// Kill the run when it takes longer than this in total.
    pub turn: Option<Duration>,
}

/// How a watched run ended.
#[derive(Debug, Clone, Default)]
pub struct RunOutcome {
    /// Exit code, when the CLI exited by itself.
    pub exit_code: Option<i32>,
    /// The signal that ended it, if any.
    pub signal: Option<i32>,
    /// Killed for silence.
    pub stalled: bool,
    /// Killed for exceeding the turn timeout.
    pub timed_out: bool,
    /// The last part of stderr (bounded), for error messages.
    pub stderr_tail: String,
    /// Wall time of the run.
    pub duration: Duration,
    /// When the child was spawned (the start of `duration`).
    pub spawned: Option<Instant>,
    /// When its first stdout arrived.
    pub first_output: Option<Instant>,
    /// The watchdog had to SIGKILL it: it did not stop after SIGTERM (stall, timeout) or did
    /// not exit after closing its pipes.
    pub killed: bool,
}

const STDERR_TAIL_BYTES: usize = 16 * 1024;
/// The pipe capacity asked for a CLI's stdout and stderr.
const PIPE_BYTES: libc::c_int = 1024 * 1024;
const KILL_GRACE: Duration = Duration::from_secs(5);
/// After the CLI itself exits, how long grandchildren may keep the pipes open.
const PIPE_GRACE: Duration = Duration::from_secs(2);

/// Sends SIGTERM, then SIGKILL after the grace period, to every process group still running.
pub fn terminate_all(grace: Duration) {
    let groups = LIVE_GROUPS.lock().map(|g| g.clone()).unwrap_or_default();
    for pgid in &groups {
        // SAFETY: signalling process groups we created.
        unsafe { libc::kill(-pgid, libc::SIGTERM) };
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && LIVE_GROUPS.lock().map(|g| !g.is_empty()).unwrap_or(false) {
        std::thread::sleep(Duration::from_millis(50));
    }
    for pgid in LIVE_GROUPS.lock().map(|g| g.clone()).unwrap_or_default() {
        // SAFETY: as above.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
    }
}

/// The number of live process groups (for the overview and tests).
pub fn live_groups() -> usize {
    LIVE_GROUPS.lock().map(|g| g.len()).unwrap_or(0)
}

/// Kills and reaps the child's process group when dropped, whatever path the run took.
struct GroupGuard {
    child: Child,
    pgid: libc::pid_t,
    reaped: Option<std::process::ExitStatus>,
}

impl GroupGuard {
    fn signal(&self, signal: libc::c_int) {
        // SAFETY: signalling the process group we created for this child.
        unsafe { libc::kill(-self.pgid, signal) };
    }

    fn try_reap(&mut self) -> Option<std::process::ExitStatus> {
        if self.reaped.is_none() {
            self.reaped = self.child.try_wait().ok().flatten();
        }
        self.reaped
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.signal(libc::SIGKILL);
        if self.reaped.is_none() {
            let _ = self.child.wait();
        }
        unregister(self.pgid);
    }
}

/// Runs `spec` under the watchdog, calling `on_line` with each complete stdout line as it arrives.
///
/// One thread (the caller's) polls stdout and stderr together with poll(2); the poll timeout is
/// the stall watchdog. On silence or overrun the whole process group gets SIGTERM, then SIGKILL
/// after 5 s. Grandchildren that keep the pipes open after the CLI exits are killed after 2 s.
/// The caller's thread must outlive the run: `PR_SET_PDEATHSIG` fires when it ends.
pub fn run(
    spec: &CommandSpec,
    limits: Limits,
    on_line: &mut dyn FnMut(&str),
) -> Result<RunOutcome> {
    let mut child = spawn(spec, Stdio::piped, false)?;
    let pgid = child.id() as libc::pid_t;
    feed_stdin(&mut child, spec.stdin.as_ref());
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let mut guard = GroupGuard {
        child,
        pgid,
        reaped: None,
    };
    for pipe in [raw(&stdout), raw(&stderr)].into_iter().flatten() {
        prepare_pipe(pipe);
    }
    let mut watchdog = Watchdog::new(limits);
    let mut first_output = None;
    let mut lines = Lines::default();
    let mut tail = Tail::default();
    let mut chunk = [0u8; 16 * 1024];
    while stdout.is_some() || stderr.is_some() {
        if watchdog.check(&mut guard) == Control::Stop {
            break;
        }
        poll_readable(&[raw(&stdout), raw(&stderr)], watchdog.poll_timeout())?;
        if let Some(pipe) = stdout.as_mut() {
            match read_available(pipe, &mut chunk) {
                ReadResult::Data(n) => {
                    watchdog.saw_output();
                    first_output.get_or_insert_with(Instant::now);
                    lines.push(&chunk[..n], on_line);
                }
                ReadResult::Eof => stdout = None,
                ReadResult::Empty => {}
            }
        }
        if let Some(pipe) = stderr.as_mut() {
            match read_available(pipe, &mut chunk) {
                ReadResult::Data(n) => {
                    watchdog.saw_output();
                    tail.push(&chunk[..n]);
                }
                ReadResult::Eof => stderr = None,
                ReadResult::Empty => {}
            }
        }
    }
    lines.finish(on_line);
    let status = watchdog.wait_for_exit(&mut guard);
    use std::os::unix::process::ExitStatusExt;
    Ok(RunOutcome {
        exit_code: status.and_then(|s| s.code()),
        signal: status.and_then(|s| s.signal()),
        stalled: watchdog.stalled,
        timed_out: watchdog.timed_out,
        stderr_tail: tail.text(),
        duration: watchdog.started.elapsed(),
        spawned: Some(watchdog.started),
        first_output,
        killed: watchdog.killed,
    })
}

/// A long-lived child's handles, given to the thread that talks to it (a warm agent).
#[derive(Debug)]
pub struct Resident {
    /// The child's stdin, open for the child's whole life.
    pub stdin: std::process::ChildStdin,
    /// The child's process group (its pid): what [`signal_group`] takes.
    pub pgid: libc::pid_t,
}

/// Runs `spec` as a long-lived child: hands its stdin to `started`, then calls `on_line` with
/// each stdout line until stdout closes, reaps it and returns how it ended. There are no stall
/// or turn limits here (callers watch their own turns and end the child with
/// [`signal_group`]); grandchildren holding the pipes after it exits are killed as in [`run`].
/// Runs on the caller's thread for the child's whole life: `PR_SET_PDEATHSIG` is tied to it.
pub fn run_resident(
    spec: &CommandSpec,
    started: &mut dyn FnMut(Resident),
    on_line: &mut dyn FnMut(&str),
) -> Result<RunOutcome> {
    let mut child = spawn(spec, Stdio::piped, true)?;
    let pgid = child.id() as libc::pid_t;
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let stdin = child.stdin.take();
    let mut guard = GroupGuard {
        child,
        pgid,
        reaped: None,
    };
    for pipe in [raw(&stdout), raw(&stderr)].into_iter().flatten() {
        prepare_pipe(pipe);
    }
    if let Some(stdin) = stdin {
        started(Resident { stdin, pgid });
    }
    let mut watchdog = Watchdog::new(Limits::default());
    let mut lines = Lines::default();
    let mut tail = Tail::default();
    let mut chunk = [0u8; 16 * 1024];
    while stdout.is_some() || stderr.is_some() {
        if watchdog.check(&mut guard) == Control::Stop {
            break;
        }
        poll_readable(&[raw(&stdout), raw(&stderr)], watchdog.poll_timeout())?;
        if let Some(pipe) = stdout.as_mut() {
            match read_available(pipe, &mut chunk) {
                ReadResult::Data(n) => lines.push(&chunk[..n], on_line),
                ReadResult::Eof => stdout = None,
                ReadResult::Empty => {}
            }
        }
        if let Some(pipe) = stderr.as_mut() {
            match read_available(pipe, &mut chunk) {
                ReadResult::Data(n) => tail.push(&chunk[..n]),
                ReadResult::Eof => stderr = None,
                ReadResult::Empty => {}
            }
        }
    }
    lines.finish(on_line);
    let status = watchdog.wait_for_exit(&mut guard);
    use std::os::unix::process::ExitStatusExt;
    Ok(RunOutcome {
        exit_code: status.and_then(|s| s.code()),
        signal: status.and_then(|s| s.signal()),
        stderr_tail: tail.text(),
        duration: watchdog.started.elapsed(),
        ..RunOutcome::default()
    })
}

/// Sends `signal` to a process group this module started (a [`Resident`]'s `pgid`) while it is
/// still registered as live: a reaped group's id may already name someone else's.
pub fn signal_group(pgid: libc::pid_t, signal: libc::c_int) {
    let live = LIVE_GROUPS
        .lock()
        .map(|g| g.contains(&pgid))
        .unwrap_or(false);
    if live && pgid > 1 {
        // SAFETY: signalling a process group we created and have not yet reaped.
        unsafe { libc::kill(-pgid, signal) };
    }
}

/// The resident memory of every process in group `pgid`, bytes (0 when none is left): what a
/// warm agent costs, wrappers and children included.
pub fn group_rss(pgid: libc::pid_t) -> u64 {
    // SAFETY: sysconf has no preconditions.
    let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // After the `)` closing the command name: state, ppid, pgrp, … rss is field 24.
            let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
            let group: libc::pid_t = fields.get(2)?.parse().ok()?;
            let pages: u64 = fields.get(21)?.parse().ok()?;
            (group == pgid).then_some(pages * page)
        })
        .sum()
}

/// The raw descriptor of a pipe still open.
fn raw(pipe: &Option<impl std::os::unix::io::AsRawFd>) -> Option<std::os::unix::io::RawFd> {
    pipe.as_ref().map(|p| p.as_raw_fd())
}

/// Non-blocking reads, and a 1 MiB pipe: a CLI that writes a burst and exits at once (gemini
/// prints a long reply and calls process.exit) loses whatever did not fit (best effort; 1 MiB is
/// the unprivileged maximum).
fn prepare_pipe(pipe: std::os::unix::io::RawFd) {
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let flags = libc::fcntl(pipe, libc::F_GETFL);
        libc::fcntl(pipe, libc::F_SETFL, flags | libc::O_NONBLOCK);
        libc::fcntl(pipe, libc::F_SETPIPE_SZ, PIPE_BYTES);
    }
}

/// Waits up to `wait` until one of the open pipes is readable (or closed).
fn poll_readable(pipes: &[Option<std::os::unix::io::RawFd>], wait: Duration) -> Result<()> {
    let mut fds: Vec<libc::pollfd> = pipes
        .iter()
        .flatten()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: `fds` is a live array of `fds.len()` pollfd structs.
    let rc = unsafe {
        libc::poll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            wait.as_millis().max(1) as libc::c_int,
        )
    };
    if rc < 0 {
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(Error::io("poll", err));
        }
    }
    Ok(())
}

/// Whether the read loop goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Control {
    Continue,
    Stop,
}

/// The limits of one run, applied to its process group: silence (stall) and overrun (turn
/// timeout) get SIGTERM, then SIGKILL after [`KILL_GRACE`]; pipes held open after the CLI
/// exited get SIGKILL after [`PIPE_GRACE`].
struct Watchdog {
    limits: Limits,
    started: Instant,
    last_output: Instant,
    exited_at: Option<Instant>,
    /// When SIGTERM was sent.
    terminated_at: Option<Instant>,
    stalled: bool,
    timed_out: bool,
    /// SIGKILL was needed.
    killed: bool,
}

impl Watchdog {
    fn new(limits: Limits) -> Watchdog {
        let now = Instant::now();
        Watchdog {
            limits,
            started: now,
            last_output: now,
            exited_at: None,
            terminated_at: None,
            stalled: false,
            timed_out: false,
            killed: false,
        }
    }

    fn saw_output(&mut self) {
        self.last_output = Instant::now();
    }

    /// Reaps an exited CLI and enforces the limits; `Stop` when the group was killed for good.
    fn check(&mut self, guard: &mut GroupGuard) -> Control {
        let now = Instant::now();
        if guard.try_reap().is_some() && self.exited_at.is_none() {
            self.exited_at = Some(now);
        }
        if self
            .exited_at
            .is_some_and(|t| now.duration_since(t) > PIPE_GRACE)
        {
            guard.signal(libc::SIGKILL);
            self.killed = true;
            return Control::Stop;
        }
        match self.terminated_at {
            Some(sent) if now.duration_since(sent) > KILL_GRACE => {
                guard.signal(libc::SIGKILL);
                self.killed = true;
                Control::Stop
            }
            Some(_) => Control::Continue,
            None => {
                let silent = self
                    .limits
                    .stall
                    .is_some_and(|s| now.duration_since(self.last_output) >= s);
                if silent || self.overrun(now) {
                    self.timed_out = self.overrun(now);
                    self.stalled = silent && !self.timed_out;
                    guard.signal(libc::SIGTERM);
                    self.terminated_at = Some(now);
                }
                Control::Continue
            }
        }
    }

    fn overrun(&self, now: Instant) -> bool {
        self.limits
            .turn
            .is_some_and(|t| now.duration_since(self.started) >= t)
    }

    /// How long the next poll may sleep: at most 200 ms (to notice exits and deadlines), and
    /// no later than the stall deadline.
    fn poll_timeout(&self) -> Duration {
        let wait = Duration::from_millis(200);
        match self.limits.stall {
            Some(stall) => wait.min(stall.saturating_sub(self.last_output.elapsed())),
            None => wait,
        }
    }

    /// After both pipes closed: waits for the CLI itself, still applying the turn timeout, and
    /// SIGKILLs it after [`KILL_GRACE`] (a CLI that closed its pipes has nothing more to say).
    fn wait_for_exit(&mut self, guard: &mut GroupGuard) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + KILL_GRACE;
        let status = loop {
            if let Some(status) = guard.try_reap() {
                break Some(status);
            }
            if Instant::now() > deadline {
                guard.signal(libc::SIGKILL);
                self.killed = true;
                break guard.child.wait().ok();
            }
            let quiet = self.terminated_at.is_none() && self.exited_at.is_none();
            if quiet && self.overrun(Instant::now()) {
                self.timed_out = true;
                guard.signal(libc::SIGTERM);
                self.terminated_at = Some(Instant::now());
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        guard.reaped = status;
        status
    }
}

/// Splits stdout into lines as bytes arrive (remembering how far it looked, so a long line
/// arriving in many chunks is scanned once).
#[derive(Default)]
struct Lines {
    buffer: Vec<u8>,
    scanned: usize,
}

impl Lines {
    fn push(&mut self, bytes: &[u8], on_line: &mut dyn FnMut(&str)) {
        self.buffer.extend_from_slice(bytes);
        while let Some(offset) = self.buffer[self.scanned..].iter().position(|b| *b == b'\n') {
            let end = self.scanned + offset;
            let text = String::from_utf8_lossy(&self.buffer[..end]);
            let text = text.trim_end_matches('\r');
            if !text.is_empty() {
                on_line(text);
            }
            self.buffer.drain(..=end);
            self.scanned = 0;
        }
        self.scanned = self.buffer.len();
    }

    /// The last line, when the output did not end with a newline.
    fn finish(&mut self, on_line: &mut dyn FnMut(&str)) {
        let text = String::from_utf8_lossy(&self.buffer).trim().to_string();
        if !text.is_empty() {
            on_line(&text);
        }
        self.buffer.clear();
    }
}

/// The last [`STDERR_TAIL_BYTES`] of stderr, for error messages.
#[derive(Default)]
struct Tail {
    bytes: Vec<u8>,
}

impl Tail {
    fn push(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
        if self.bytes.len() > STDERR_TAIL_BYTES {
            let excess = self.bytes.len() - STDERR_TAIL_BYTES;
            self.bytes.drain(..excess);
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

enum ReadResult {
    Data(usize),
    Eof,
    Empty,
}

fn read_available(pipe: &mut impl Read, buf: &mut [u8]) -> ReadResult {
    match pipe.read(buf) {
        Ok(0) => ReadResult::Eof,
        Ok(n) => ReadResult::Data(n),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
            ) =>
        {
            ReadResult::Empty
        }
        Err(_) => ReadResult::Eof,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> CommandSpec {
        CommandSpec::new("/bin/sh", std::env::temp_dir())
            .args(["-c", script])
            .env("PATH", "/usr/bin:/bin")
    }

    fn run_collect(spec: &CommandSpec, limits: Limits) -> (RunOutcome, Vec<String>) {
        let mut lines = Vec::new();
        let outcome = run(spec, limits, &mut |l| lines.push(l.to_string())).unwrap();
        (outcome, lines)
    }

    #[test]
    fn lines_arrive_whole_however_the_bytes_are_cut() {
        let mut lines = Lines::default();
        let mut seen = Vec::new();
        let mut collect = |l: &str| seen.push(l.to_string());
        for chunk in ["a", "bc\r\nd", "e\n\nf", "gh", "i\n", "tail"] {
            lines.push(chunk.as_bytes(), &mut collect);
        }
        lines.finish(&mut collect);
        assert_eq!(seen, ["abc", "de", "fghi", "tail"]);
        let mut tail = Tail::default();
        tail.push(&vec![b'x'; STDERR_TAIL_BYTES]);
        tail.push(b"end");
        assert_eq!(tail.text().len(), STDERR_TAIL_BYTES);
        assert!(tail.text().ends_with("xend"));
    }

    #[test]
    fn lines_exit_code_and_stderr() {
        let (outcome, lines) = run_collect(
            &sh("echo one; printf 'two\\nthree'; echo oops >&2; exit 3"),
            Limits::default(),
        );
        assert_eq!(lines, ["one", "two", "three"]);
        assert_eq!(outcome.exit_code, Some(3));
        assert!(outcome.stderr_tail.contains("oops"));
        assert!(!outcome.stalled);
    }

    #[test]
    fn stdin_is_written_then_closed() {
        let mut spec = sh("cat");
        spec.stdin = Some("hello stdin\n".into());
        let (outcome, lines) = run_collect(
            &spec,
            Limits {
                stall: Some(Duration::from_secs(5)),
                turn: None,
            },
        );
        assert_eq!(lines, ["hello stdin"]);
        assert_eq!(outcome.exit_code, Some(0));
    }

    #[test]
    fn environment_is_only_what_the_spec_says() {
        let (_, lines) = run_collect(&sh("env | sort"), Limits::default());
        assert!(
            lines.iter().all(|l| l.starts_with("PATH=")
                || l.starts_with("PWD=")
                || l.starts_with("SHLVL=")
                || l.starts_with("_=")),
            "{lines:?}"
        );
    }

    #[test]
    fn stall_kills_the_group_including_grandchildren() {
        let marker = std::env::temp_dir().join(crate::crypto::random_id("codara-stall-"));
        let script = format!(
            "echo started; (sleep 30; touch {}) & sleep 30",
            marker.display()
        );
        let (outcome, lines) = run_collect(
            &sh(&script),
            Limits {
                stall: Some(Duration::from_millis(300)),
                turn: None,
            },
        );
        assert_eq!(lines, ["started"]);
        assert!(outcome.stalled);
        assert!(
            outcome.duration < Duration::from_secs(10),
            "{:?}",
            outcome.duration
        );
        assert_eq!(outcome.signal, Some(libc::SIGTERM));
        std::thread::sleep(Duration::from_millis(200));
        assert!(!marker.exists());
    }

    #[test]
    fn turn_timeout_applies_even_with_output() {
        let (outcome, _) = run_collect(
            &sh("while true; do echo tick; sleep 0.05; done"),
            Limits {
                stall: Some(Duration::from_secs(5)),
                turn: Some(Duration::from_millis(400)),
            },
        );
        assert!(outcome.timed_out);
        assert!(!outcome.stalled);
    }

    #[test]
    fn grandchild_holding_pipes_does_not_hang() {
        let started = Instant::now();
        let (outcome, lines) = run_collect(&sh("echo done; sleep 60 &"), Limits::default());
        assert_eq!(lines, ["done"]);
        assert_eq!(outcome.exit_code, Some(0));
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}

#[cfg(test)]
mod isolation_tests {
    use super::*;
    use crate::sandbox::Sandbox;

    fn sh(script: &str) -> CommandSpec {
        CommandSpec::new("/bin/sh", std::env::temp_dir())
            .args(["-c", script])
            .env("PATH", "/usr/bin:/bin")
    }

    #[test]
    fn no_descriptor_of_the_parent_survives_exec() {
        // A descriptor the parent holds without CLOEXEC (like one a library might leak).
        let file = std::fs::File::open("/dev/null").unwrap();
        let raw = std::os::fd::AsRawFd::as_raw_fd(&file);
        // SAFETY: clearing FD_CLOEXEC on a descriptor we own.
        unsafe { libc::fcntl(raw, libc::F_SETFD, 0) };
        let out = capture(
            &sh(&format!(
                "ls /proc/self/fd; test -e /proc/self/fd/{raw} && echo LEAK"
            )),
            Duration::from_secs(10),
        )
        .unwrap();
        assert!(!out.stdout.contains("LEAK"), "{}", out.stdout);
    }

    #[test]
    fn confined_children_reach_only_their_allow_list() {
        assert!(
            crate::sandbox::kernel_abi().is_some(),
            "this test needs a kernel with Landlock (Linux >= 5.13, landlock enabled)"
        );
        let base = std::env::temp_dir().join(crate::crypto::random_id("codara-confine-"));
        let (work, home, tmp, secret) = (
            base.join("ws"),
            base.join("home"),
            base.join("tmp"),
            base.join("secret"),
        );
        for dir in [&work, &home, &tmp, &secret] {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(secret.join("key"), "hunter2").unwrap();
        let mut config = crate::config::Config::default();
        config.storage.data_dir = base.join("data");
        config.workspace.root = base.join("root");
        let sandbox = Sandbox::detect(&config, &[]).unwrap();
        let mut spec = sh(&format!(
            "cat {key}; echo written > {ws}/out; echo outside > {secret}/out; \
             cat /proc/{parent}/environ; read -r first < /proc/self/status && echo SELF; ls /tmp",
            key = secret.join("key").display(),
            ws = work.display(),
            secret = secret.display(),
            parent = std::process::id(),
        ));
        spec.cwd = work.clone();
        spec.confine = sandbox.agent(crate::providers::Provider::Codex, &work, &home, &tmp);
        assert!(spec.confine.is_some());
        let out = capture(&spec, Duration::from_secs(10)).unwrap();
        assert!(!out.stdout.contains("hunter2"), "{}", out.stdout);
        assert_eq!(
            std::fs::read_to_string(work.join("out")).unwrap(),
            "written\n"
        );
        assert!(!secret.join("out").exists());
        // The confined process itself (here the shell) reads its own /proc entry.
        assert!(
            out.stdout.contains("SELF"),
            "own /proc entry readable: {out:?}"
        );
        assert!(
            !out.stdout.contains("PATH="),
            "parent environ leaked: {}",
            out.stdout
        );
        assert!(out.stderr.contains("Permission denied"), "{}", out.stderr);
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // Plain children stand in for a crashed run's groups.
    fn leftover_groups_are_killed_only_when_still_the_same() {
        let dir = std::env::temp_dir().join(crate::crypto::random_id("codara-registry-"));
        std::fs::create_dir_all(&dir).unwrap();
        // A live group recorded with its real start time: killed.
        let mut live = std::process::Command::new("/bin/sleep");
        live.arg("30").process_group(0);
        let mut child = live.spawn().unwrap();
        let pid = child.id() as libc::pid_t;
        std::fs::write(
            dir.join(pid.to_string()),
            start_ticks(pid).unwrap().to_string(),
        )
        .unwrap();
        // A record whose start time does not match (a reused pid): left alone.
        let mut other = std::process::Command::new("/bin/sleep");
        other.arg("30").process_group(0);
        let mut bystander = other.spawn().unwrap();
        std::fs::write(dir.join(bystander.id().to_string()), "1").unwrap();
        assert_eq!(reap_leftovers(&dir), 1);
        assert!(child.wait().unwrap().code().is_none(), "killed by a signal");
        assert!(
            bystander.try_wait().unwrap().is_none(),
            "the bystander still runs"
        );
        let _ = bystander.kill();
        let _ = bystander.wait();
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
