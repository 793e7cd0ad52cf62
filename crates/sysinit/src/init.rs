//! A complete standalone init around the user's code: [`Init`].

use crate::console::{self, Port};
use crate::setup::{self, Setup};
use crate::{Error, INIT_FAILED, channel, log, power};
use std::ffi::OsString;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Any error, as user code returns it; `?` converts every error type into it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Exit code reported when the user's code returned an error, as for a Rust
/// `main` that returns `Err`.
pub const FAILED: i32 = 1;

/// Exit code reported when the user's code panicked, as for a Rust program
/// that panics.
pub const PANICKED: i32 = 101;

/// What user code may return on success: the exit code to report.
pub trait IntoExitCode {
    /// The exit code.
    fn into_exit_code(self) -> i32;
}

impl IntoExitCode for () {
    /// Success: 0.
    fn into_exit_code(self) -> i32 {
        0
    }
}

impl IntoExitCode for i32 {
    fn into_exit_code(self) -> i32 {
        self
    }
}

impl IntoExitCode for u8 {
    fn into_exit_code(self) -> i32 {
        i32::from(self)
    }
}

impl IntoExitCode for crate::process::Exit {
    /// The code, or 128 + the signal.
    fn into_exit_code(self) -> i32 {
        self.code()
    }
}

impl IntoExitCode for std::process::ExitStatus {
    /// The code, or 128 + the signal, as a shell reports a child's status.
    fn into_exit_code(self) -> i32 {
        use std::os::unix::process::ExitStatusExt;
        match (self.code(), self.signal()) {
            (Some(code), _) => code,
            (None, Some(sig)) => 128 + sig,
            (None, None) => FAILED,
        }
    }
}

/// A setup step or cleanup of user code.
type Step = Box<dyn FnOnce(&mut Context) -> Result<(), BoxError>>;
type Cleanup = Box<dyn FnOnce() -> Result<(), BoxError>>;

/// A standalone init: sets the guest up, runs user code, reports its exit
/// code to the host and powers the guest off. See the [crate] docs.
pub struct Init {
    name: Option<String>,
    setup: Setup,
    clear_env: bool,
    env: Vec<(OsString, OsString)>,
    port_wait: Duration,
    steps: Vec<Step>,
}

impl Default for Init {
    fn default() -> Self {
        Init::new()
    }
}

impl std::fmt::Debug for Init {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Init")
            .field("name", &self.name)
            .field("setup", &self.setup)
            .field("clear_env", &self.clear_env)
            .field("env", &self.env)
            .field("port_wait", &self.port_wait)
            .field("steps", &self.steps.len())
            .finish()
    }
}

impl Init {
    /// An init with the default [`Setup`], the environment of every virtrun
    /// guest ([`virtrun_protocol::GUEST_ENV`]: `HOME=/`, `TERM=linux`,
    /// `PATH=/data`, in this order) and no steps.
    pub fn new() -> Self {
        Init {
            name: None,
            setup: Setup::new(),
            clear_env: true,
            env: virtrun_protocol::GUEST_ENV
                .iter()
                .map(|(k, v)| (OsString::from(k), OsString::from(v)))
                .collect(),
            port_wait: channel::PORT_WAIT,
            steps: Vec::new(),
        }
    }

    /// The name in the init's messages; default: the file name it was run as.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Replaces the system setup (filesystems, modules, interfaces, links).
    pub fn setup(mut self, setup: Setup) -> Self {
        self.setup = setup;
        self
    }

    /// Starts from an empty environment: no variable at all, not even
    /// [`virtrun_protocol::GUEST_ENV`]; add them with [`Init::env`].
    pub fn clear_env(mut self) -> Self {
        self.clear_env = true;
        self.env.clear();
        self
    }

    /// Sets an environment variable for the user code and its children.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// How long to wait for virtio ports after their driver loaded (default
    /// [`channel::PORT_WAIT`]).
    pub fn port_wait(mut self, wait: Duration) -> Self {
        self.port_wait = wait;
        self
    }

    /// Adds a step that runs after the system setup, before the main
    /// function, in the order added. A step that fails ends the run: the
    /// remaining steps and the main function are skipped, the cleanups run
    /// and the failure is reported.
    pub fn step<F>(mut self, step: F) -> Self
    where
        F: FnOnce(&mut Context) -> Result<(), BoxError> + 'static,
    {
        self.steps.push(Box::new(step));
        self
    }

    /// Runs the init to its end; never returns.
    ///
    /// Not PID 1: prints why on stderr and exits with [`INIT_FAILED`],
    /// touching nothing. As PID 1: sets the system up, connects stdout and
    /// stderr to the host, runs the steps and `main`, then the cleanups in
    /// reverse order, reports the exit code — `main`'s value
    /// ([`IntoExitCode`]), [`FAILED`] for an error, [`PANICKED`] for a panic,
    /// [`INIT_FAILED`] when the setup failed — and powers the guest off.
    /// Errors and panic messages go to the kernel log, which the host shows.
    pub fn run<F, T>(self, main: F) -> !
    where
        F: FnOnce(&mut Context) -> Result<T, BoxError>,
        T: IntoExitCode,
    {
        let name = self.name.clone().unwrap_or_else(program_name);
        crate::exit_unless_pid1(&name);
        panic::set_hook(Box::new(on_panic));
        let code = self.boot_and_run(main);
        finish(code)
    }

    fn boot_and_run<F, T>(self, main: F) -> i32
    where
        F: FnOnce(&mut Context) -> Result<T, BoxError>,
        T: IntoExitCode,
    {
        if let Err(e) = setup::start() {
            log::error(&e.to_string());
            return INIT_FAILED;
        }
        // The ports are looked for even when the setup failed, so that the
        // failure is reported where the host looks.
        let setup = self.setup.run().and_then(|()| self.apply_env());
        let ports = console::discover(self.port_wait);
        if let Err(e) = setup.and_then(|()| console::connect(&ports)) {
            log::error(&e.to_string());
            return INIT_FAILED;
        }
        let mut ctx = Context {
            ports,
            cleanups: Vec::new(),
        };
        let code = run_user(&mut ctx, self.steps, main);
        ctx.run_cleanups();
        code
    }

    fn apply_env(&self) -> crate::Result<()> {
        if !self.clear_env && self.env.is_empty() {
            return Ok(());
        }
        if !setup::single_threaded()? {
            return Err(Error::new(
                "set the environment",
                io::Error::other("other threads are running"),
            ));
        }
        // SAFETY: this process has a single thread (checked just above), and
        // it starts none until the environment is set.
        unsafe {
            if self.clear_env {
                setup::clear_env();
            }
            setup::set_envs(self.env.iter().map(|(k, v)| (k, v)));
        }
        Ok(())
    }
}

/// What user code gets: the host's ports and a place for cleanups.
pub struct Context {
    ports: Vec<Port>,
    cleanups: Vec<Cleanup>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("ports", &self.ports)
            .field("cleanups", &self.cleanups.len())
            .finish()
    }
}

impl Context {
    /// Registers a cleanup. Cleanups run after the main function (or the
    /// step that failed), last registered first, even after a panic; their
    /// errors are logged and do not change the exit code.
    pub fn cleanup<F>(&mut self, cleanup: F)
    where
        F: FnOnce() -> Result<(), BoxError> + 'static,
    {
        self.cleanups.push(Box::new(cleanup));
    }

    /// The host's ports found in this guest, in port order, port 0 first.
    pub fn ports(&self) -> &[Port] {
        &self.ports
    }

    /// The device of port `number`, e.g. an output file port (2, 3, …);
    /// also reachable as `/dev/virtrunN`.
    pub fn port(&self, number: usize) -> Option<&Path> {
        self.ports
            .iter()
            .find(|p| p.number == number)
            .map(|p| p.device.as_path())
    }

    fn run_cleanups(&mut self) {
        while let Some(cleanup) = self.cleanups.pop() {
            match panic::catch_unwind(AssertUnwindSafe(cleanup)) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => log::error(&format!("cleanup failed: {}", chain(&*e))),
                // The panic hook logged it.
                Err(_) => {}
            }
        }
    }
}

/// Runs the steps and `main`, catching a panic (when panics unwind).
fn run_user<F, T>(ctx: &mut Context, steps: Vec<Step>, main: F) -> i32
where
    F: FnOnce(&mut Context) -> Result<T, BoxError>,
    T: IntoExitCode,
{
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        for step in steps {
            step(ctx)?;
        }
        main(ctx).map(IntoExitCode::into_exit_code)
    }));
    match outcome {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => {
            log::error(&format!("error: {}", chain(&*e)));
            FAILED
        }
        // The panic hook logged it.
        Err(_) => PANICKED,
    }
}

/// An error with its sources, `outer: inner: innermost`.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Set once the exit code is being reported: it is reported only once.
static FINISHING: AtomicBool = AtomicBool::new(false);

/// Reports `code` and powers off. A second caller (a thread panicking while
/// the first reports) waits for the power-off instead.
fn finish(code: i32) -> ! {
    if FINISHING.swap(true, Ordering::SeqCst) {
        loop {
            std::thread::park();
        }
    }
    if let Err(e) = console::report_exit_code(code) {
        log::error(&format!("report exit code {code}: {e}"));
    }
    power::shutdown()
}

/// The panic hook: logs the panic on the kernel log, where the host shows it.
/// When panics abort, the process ends right after this hook, so the
/// failure is reported and the guest powered off from here (the cleanups
/// do not run).
fn on_panic(info: &panic::PanicHookInfo<'_>) {
    let thread = std::thread::current();
    log::error(&format!(
        "thread '{}' {info}",
        thread.name().unwrap_or("<unnamed>")
    ));
    if cfg!(panic = "abort") {
        finish(PANICKED);
    }
}

/// The file name this program was started as, for messages.
fn program_name() -> String {
    std::env::args_os()
        .next()
        .as_deref()
        .map(Path::new)
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "init".to_string())
}
