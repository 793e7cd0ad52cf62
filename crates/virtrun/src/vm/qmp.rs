//! A client of QEMU's machine protocol (QMP), for the few commands warm
//! start needs: save a parked guest's device state to a file, then end
//! QEMU or let the guest go on; restore a guest from a file; and, under
//! `-gdb`, to learn when gdb lets the guest run.
//!
//! QMP is JSON, one message per line; `serde_json` reads the answers.

use serde_json::{Value, json};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// A QMP session on the socket QEMU inherited (`-mon mode=control`).
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    deadline: Instant,
}

fn broken(what: impl Into<String>) -> io::Error {
    io::Error::other(what.into())
}

impl Qmp {
    /// Reads QEMU's greeting and enters command mode. Every answer must come
    /// before `deadline`.
    pub fn connect(stream: UnixStream, deadline: Instant) -> io::Result<Qmp> {
        let writer = stream.try_clone()?;
        let mut qmp = Qmp {
            reader: BufReader::new(stream),
            writer,
            deadline,
        };
        let greeting = qmp.message()?;
        if greeting.get("QMP").is_none() {
            return Err(broken(format!("not a QMP greeting: {greeting}")));
        }
        qmp.execute("qmp_capabilities", json!({}))?;
        Ok(qmp)
    }

    /// Waits, for as long as it takes, until QEMU reports the event `name`
    /// (such as `RESUME`).
    pub fn wait_for_event(&mut self, name: &str) -> io::Result<()> {
        self.reader.get_ref().set_read_timeout(None)?;
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "QMP: QEMU closed the connection",
                ));
            }
            let message: Value =
                serde_json::from_str(&line).map_err(|e| broken(format!("QMP: {e}: {line}")))?;
            if message.get("event").and_then(Value::as_str) == Some(name) {
                return Ok(());
            }
        }
    }

    /// The next message, within the deadline.
    fn message(&mut self) -> io::Result<Value> {
        let left = self
            .deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| io::Error::new(io::ErrorKind::TimedOut, "QMP: no answer in time"))?;
        self.reader.get_ref().set_read_timeout(Some(left))?;
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "QMP: QEMU closed the connection",
            ));
        }
        serde_json::from_str(&line).map_err(|e| broken(format!("QMP: {e}: {line}")))
    }

    /// Runs `command` and returns its result; events in between are skipped.
    pub fn execute(&mut self, command: &str, arguments: Value) -> io::Result<Value> {
        let request = json!({"execute": command, "arguments": arguments});
        self.writer.write_all(format!("{request}\n").as_bytes())?;
        loop {
            let mut answer = self.message()?;
            if let Some(result) = answer.get_mut("return") {
                return Ok(result.take());
            }
            if let Some(error) = answer.get("error") {
                let desc = error.get("desc").and_then(Value::as_str).unwrap_or("?");
                return Err(broken(format!("QMP {command}: {desc}")));
            }
        }
    }

    /// Waits until the migration in progress completed.
    pub fn wait_for_migration(&mut self) -> io::Result<()> {
        loop {
            let state = self.execute("query-migrate", json!({}))?;
            match state.get("status").and_then(Value::as_str) {
                Some("completed") => return Ok(()),
                Some("failed" | "cancelled") => {
                    let why = state
                        .get("error-desc")
                        .and_then(Value::as_str)
                        .unwrap_or("no reason given");
                    return Err(broken(format!("migration failed: {why}")));
                }
                _ => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    }

    /// Migration leaves out the guest's memory, which is a file that the
    /// snapshot is made of (see `vm::snapshot`): only the device state
    /// goes through the migration stream.
    fn memory_stays_in_its_file(&mut self) -> io::Result<()> {
        self.execute(
            "migrate-set-capabilities",
            json!({"capabilities": [{"capability": "x-ignore-shared", "state": true}]}),
        )
        .map(drop)
    }

    /// Saves the guest's device state to `uri` (`file:…`) and waits until
    /// done; the guest is paused then. It is not stopped first: a snapshot
    /// of a running guest starts running as soon as QEMU loaded it.
    pub fn save(&mut self, uri: &str) -> io::Result<()> {
        self.memory_stays_in_its_file()?;
        self.execute("migrate", json!({"uri": uri}))?;
        self.wait_for_migration()
    }

    /// Has QEMU (started with `-incoming defer`) restore the guest whose
    /// device state is at `uri`; it runs once loaded.
    pub fn restore(&mut self, uri: &str) -> io::Result<()> {
        self.memory_stays_in_its_file()?;
        self.execute("migrate-incoming", json!({"uri": uri}))
            .map(drop)
    }

    /// Ends QEMU.
    pub fn quit(&mut self) -> io::Result<()> {
        self.execute("quit", json!({})).map(drop)
    }

    /// Lets the guest run.
    pub fn cont(&mut self) -> io::Result<()> {
        self.execute("cont", json!({})).map(drop)
    }
}
