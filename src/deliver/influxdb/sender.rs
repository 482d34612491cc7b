//! The sender thread of one output: oldest spool rows → requests → server → delete on success.
//!
//! Rows are read in acceptance order and concatenated into requests of at most
//! `batch_max_lines` lines and `batch_max_bytes` bytes, each request of rows written with one
//! timestamp precision (sent as its `precision=`); a request that is not full waits until its
//! oldest row is `flush_interval` old, so the batches of one cycle travel together. That wait is
//! measured on the monotonic clock and never exceeds `flush_interval`, whatever the wall clock
//! does. Rows are deleted only after the server's answer settles them (see
//! [`super::response`]); until then they stay in the spool, so a crash or restart resends them.
//! While the spool is full and dropping old rows, a wait after an outage (no answer, 429, 5xx)
//! probes the server's health endpoint every [`PROBE_INTERVAL`] and ends as soon as it answers. Only one sender runs
//! per spool file in a process (a reload waits for the previous one to stop).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, Sender};

use super::config::Api;
use super::error::Error;
use super::request::Endpoint;
use super::response::{classify, shorten, Outcome, RejectedLine};
use super::spool::Spool;
use super::stats::DeliveryStats;
use crate::backoff::Backoff;
use crate::encode::Precision;
use crate::logging::episode::Episode;

/// What the sender needs besides its spool.
pub struct SenderSettings {
    /// The output's display name (logs).
    pub name: String,
    /// Where and how to write.
    pub endpoint: Endpoint,
    /// The HTTP client.
    pub agent: ureq3::Agent,
    /// Most lines per request.
    pub max_lines: u64,
    /// Most bytes per request (before compression).
    pub max_bytes: u64,
    /// How long a request that is not full waits for more lines.
    pub flush_interval: Duration,
    /// Create a missing database (v1, v3).
    pub create_database: bool,
    /// The spool's size bound (`spool_max_size`): near it, the spool drops old rows, so
    /// retries probe the server more often.
    pub spool_max_bytes: u64,
}

/// How often a sender whose spool is dropping rows probes the server's health endpoint while
/// it waits to retry.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(2);

/// The handle that stops the sender: dropping it asks the thread to stop after its current
/// request.
pub struct SenderHandle {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
    done: Receiver<()>,
}

impl SenderHandle {
    /// Asks the thread to stop and waits up to `timeout` for it.
    pub fn stop(&mut self, timeout: Duration) {
        self.stop = None;
        if self.done.recv_timeout(timeout).is_ok() {
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }
}

impl Drop for SenderHandle {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(2));
    }
}

/// One lock per spool file in this process: the sender holds it while it runs.
fn spool_lock(path: &Path) -> Arc<Mutex<()>> {
    static LOCKS: OnceLock<Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>> = OnceLock::new();
    let map = LOCKS.get_or_init(|| Mutex::new(HashMap::new()));
    let mut m = map.lock().unwrap_or_else(|p| p.into_inner());
    Arc::clone(m.entry(path.to_owned()).or_default())
}

/// Starts the sender of `spool`; `wake` is signalled after each commit.
pub fn spawn(
    spool: Spool,
    settings: SenderSettings,
    stats: Arc<DeliveryStats>,
    wake: Receiver<()>,
) -> std::io::Result<SenderHandle> {
    let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
    let (done_tx, done) = crossbeam_channel::bounded::<()>(1);
    let thread = std::thread::Builder::new()
        .name(format!("send {}", settings.name))
        .spawn(move || {
            let lock = spool_lock(spool.path());
            let _running = lock.lock().unwrap_or_else(|p| p.into_inner());
            // The previous sender of this file (before a reload) may have deleted rows since
            // the spool was opened, and its sink appended its last ones.
            if let Err(e) = spool.recount_backlog() {
                tracing::warn!("{e}");
            }
            let mut s = SenderLoop {
                spool,
                settings,
                stats,
                stop: stop_rx,
                wake,
                backoff: Backoff::default(),
                failing: Episode::default(),
                learned_max_bytes: None,
                created: false,
                flush_at: None,
                dropped_seen: 0,
            };
            s.run();
            let _ = done_tx.send(());
        })?;
    Ok(SenderHandle {
        stop: Some(stop_tx),
        thread: Some(thread),
        done,
    })
}

/// How one attempt at a set of rows ended.
enum Step {
    /// Settled (stored, or refused for good): delete the rows.
    Settled,
    /// Not settled: wait this long and try again. The second value says whether health probes
    /// may end the wait early (the server was down or overloaded: no answer, 429, 5xx), and
    /// after how long at the least (its `Retry-After`); `None` for failures a healthy server
    /// keeps giving (credentials, a missing database, a proxy's answer).
    Wait(Duration, Option<Duration>),
}

struct SenderLoop {
    spool: Spool,
    settings: SenderSettings,
    stats: Arc<DeliveryStats>,
    stop: Receiver<()>,
    wake: Receiver<()>,
    backoff: Backoff,
    /// The last failure reported, to report each distinct failure once per outage.
    failing: Episode,
    /// A request size the server refused with 413: later requests stay below it.
    learned_max_bytes: Option<u64>,
    /// Whether database creation was already attempted.
    created: bool,
    /// The oldest waiting row of a request that is not full, and when (monotonic) it is sent
    /// anyway.
    flush_at: Option<(i64, Instant)>,
    /// `dropped_lines` when the last retry wait began (a change means the spool dropped rows).
    dropped_seen: u64,
}

impl SenderLoop {
    /// Waits `d`; false if asked to stop.
    fn pause(&self, d: Duration) -> bool {
        select! {
            recv(self.stop) -> _ => false,
            default(d) => true,
        }
    }

    /// When a request whose oldest row is `id` (accepted at wall-clock `created_ns`) is sent
    /// although not full: `flush_interval` after its acceptance, but never more than
    /// `flush_interval` from the first time this sender saw it (a clock stepped back makes rows
    /// look accepted in the future), and measured on the monotonic clock from then on.
    fn flush_deadline(&mut self, id: i64, created_ns: i64) -> Instant {
        if let Some((seen, at)) = self.flush_at {
            if seen == id {
                return at;
            }
        }
        let flush = self.settings.flush_interval;
        let age_ns = crate::collect::wall_ns().saturating_sub(created_ns);
        let age = Duration::from_nanos(u64::try_from(age_ns).unwrap_or(0));
        let at = Instant::now() + flush.saturating_sub(age);
        self.flush_at = Some((id, at));
        at
    }

    /// True while the spool is dropping rows (it dropped some since the last wait, or it is
    /// within a tenth of its size bound).
    fn spool_dropping(&mut self) -> bool {
        let dropped = self.stats.dropped_lines.load(Ordering::Relaxed);
        let changed = dropped != self.dropped_seen;
        self.dropped_seen = dropped;
        let backlog = self.stats.backlog_bytes.load(Ordering::Relaxed);
        changed || backlog >= self.settings.spool_max_bytes / 10 * 9
    }

    /// Waits `d` before a retry. After an outage (`probe_after` set) while the spool is
    /// dropping rows, probes the server's health endpoint every [`PROBE_INTERVAL`] once
    /// `probe_after` (the server's `Retry-After`) has passed, and ends the wait as soon as it
    /// answers 2xx. False if asked to stop.
    fn wait_retry(&mut self, d: Duration, probe_after: Option<Duration>) -> bool {
        let Some(floor) = probe_after.filter(|f| *f < d) else {
            return self.pause(d);
        };
        if !self.spool_dropping() {
            return self.pause(d);
        }
        let end = Instant::now() + d;
        if !self.pause(floor) {
            return false;
        }
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            if !self.pause(left.min(PROBE_INTERVAL)) {
                return false;
            }
            let ep = &self.settings.endpoint;
            if let Ok(a) = ep.get(&self.settings.agent, ep.health_path(), &[]) {
                if (200..300).contains(&a.status) {
                    return true;
                }
            }
        }
    }

    /// Waits for new rows; false if asked to stop.
    fn idle(&self) -> bool {
        select! {
            recv(self.stop) -> _ => false,
            recv(self.wake) -> r => r.is_ok(),
        }
    }

    fn run(&mut self) {
        let name = self.settings.name.clone();
        loop {
            if let Err(crossbeam_channel::TryRecvError::Disconnected) = self.stop.try_recv() {
                return;
            }
            let max_bytes = self
                .learned_max_bytes
                .map_or(self.settings.max_bytes, |l| l.min(self.settings.max_bytes));
            let (rows, precision_break) =
                match self.spool.oldest(self.settings.max_lines, max_bytes) {
                    Ok(r) => r,
                    Err(e) => {
                        self.report(format!("cannot read the spool: {e}"));
                        if !self.pause(Duration::from_secs(5)) {
                            return;
                        }
                        continue;
                    }
                };
            let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
                if !self.idle() {
                    return;
                }
                continue;
            };
            let (first_id, last_id, oldest) = (first.id, last.id, first.created_ns);
            let precision = first.precision;
            let lines: u64 = rows.iter().map(|r| r.lines).sum();
            let bytes: u64 = rows.iter().map(|r| r.body.len() as u64).sum();
            // A request holds rows of one precision only; rows of another one waiting behind
            // it mean it will not grow, so it goes now.
            let full =
                lines >= self.settings.max_lines || bytes * 2 >= max_bytes || precision_break;
            if !full {
                let due = self.flush_deadline(first_id, oldest);
                let now = Instant::now();
                if now < due {
                    if !self.pause(due - now) {
                        return;
                    }
                    continue;
                }
            }
            self.flush_at = None;
            let body: String = rows.iter().map(|r| r.body.as_str()).collect();
            drop(rows);
            match self.send_all(&body, precision) {
                Step::Settled => {
                    if let Err(e) = self.spool.delete(first_id, last_id) {
                        // Resent later: the server overwrites identical points.
                        self.report(format!("cannot delete sent rows from the spool: {e}"));
                        if !self.pause(Duration::from_secs(5)) {
                            return;
                        }
                        continue;
                    }
                    if let Some(n) = self.failing.end() {
                        tracing::info!(
                            output = %name,
                            backlog_batches = self.stats.backlog_batches.load(Ordering::Relaxed),
                            "delivering again after {n} failed attempts"
                        );
                    }
                    self.backoff.reset();
                }
                Step::Wait(d, probe_after) => {
                    self.stats.retried.fetch_add(1, Ordering::Relaxed);
                    if !self.wait_retry(d, probe_after) {
                        return;
                    }
                }
            }
        }
    }

    /// Logs a failure once per distinct message until delivery works again.
    fn report(&mut self, msg: String) {
        if self.failing.occur(&msg) {
            tracing::error!(output = %self.settings.name, "{msg}");
        }
    }

    /// Like [`Self::report`] for a failure that is retried after `d`.
    fn report_wait(&mut self, msg: String, d: Duration) -> Step {
        self.report_wait_probing(msg, d, None)
    }

    /// Like [`Self::report_wait`] after an outage, when health probes may end the wait once
    /// `probe_after` has passed (see [`Step::Wait`]).
    fn report_wait_probing(
        &mut self,
        msg: String,
        d: Duration,
        probe_after: Option<Duration>,
    ) -> Step {
        if self.failing.occur(&msg) {
            tracing::error!(
                output = %self.settings.name,
                "{msg}. The data stays in the spool and is retried with backoff (next in {:.1}s)",
                d.as_secs_f64()
            );
        }
        Step::Wait(d, probe_after)
    }

    /// Sends `body` (whole lines with timestamps in `precision`), splitting on 413.
    fn send_all(&mut self, body: &str, precision: Precision) -> Step {
        let answer = match self
            .settings
            .endpoint
            .write(&self.settings.agent, body, precision)
        {
            Ok(a) => a,
            Err(e) => {
                let d = self.backoff.next_delay(None);
                let msg = format!("cannot reach {}: {e}", self.settings.endpoint.base);
                return self.report_wait_probing(msg, d, Some(Duration::ZERO));
            }
        };
        let lines = body.lines().count() as u64;
        match classify(
            answer.status,
            answer.retry_after.as_deref(),
            &answer.body,
            body,
        ) {
            Outcome::Delivered => {
                self.stats
                    .delivered_lines
                    .fetch_add(lines, Ordering::Relaxed);
                self.stats
                    .delivered_requests
                    .fetch_add(1, Ordering::Relaxed);
                Step::Settled
            }
            Outcome::Rejected {
                status,
                message,
                lines: named,
                refused,
            } => {
                let refused = refused.min(lines);
                self.log_rejected(status, &message, &named, lines, refused);
                self.stats
                    .rejected_lines
                    .fetch_add(refused, Ordering::Relaxed);
                self.stats
                    .delivered_lines
                    .fetch_add(lines - refused, Ordering::Relaxed);
                self.stats
                    .delivered_requests
                    .fetch_add(1, Ordering::Relaxed);
                Step::Settled
            }
            Outcome::NotARefusal { status, message } => {
                let d = self.backoff.next_delay(None);
                let msg = format!(
                    "{} answered {status} with a body that is not an InfluxDB refusal (a proxy, load balancer or firewall in between?): {message}; check url",
                    self.settings.endpoint.base
                );
                self.report_wait(msg, d)
            }
            Outcome::TooLarge => {
                let size = body.len() as u64;
                if lines <= 1 {
                    tracing::error!(
                        output = %self.settings.name,
                        "the server refused a single line of {size} bytes as too large (413); it cannot be split, so it is dropped: {}",
                        shorten(body.trim_end(), 200)
                    );
                    self.stats
                        .rejected_lines
                        .fetch_add(lines, Ordering::Relaxed);
                    return Step::Settled;
                }
                if self.learned_max_bytes.is_none_or(|l| l >= size) {
                    tracing::warn!(
                        output = %self.settings.name,
                        "the server refused {size} bytes ({lines} lines) as too large (413); sending smaller requests (lower batch_max_bytes to avoid this)"
                    );
                }
                // Keep the smallest size learned: a later 413 of a larger request (the server's
                // limit may vary with its load) must not raise it again.
                let learned = (size / 2).max(1024);
                self.learned_max_bytes =
                    Some(self.learned_max_bytes.map_or(learned, |l| l.min(learned)));
                let (a, b) = split_half(body);
                match self.send_all(a, precision) {
                    Step::Settled => self.send_all(b, precision),
                    wait => wait,
                }
            }
            Outcome::Auth { status, message } => {
                let d = self.backoff.next_delay(None);
                let what = if status == 401 {
                    "refused the credentials (401)"
                } else {
                    "denied permission to write (403)"
                };
                let fix = match self.settings.endpoint.api {
                    Api::V1 => "check token_env/token_file or username/password_env",
                    Api::V2 | Api::V3 => {
                        "check token_env/token_file and the token's write permission"
                    }
                };
                let msg = format!("{} {what}: {message}; {fix}", self.settings.endpoint.base);
                self.report_wait(msg, d)
            }
            Outcome::NotFound { message } => {
                if self.settings.create_database && !self.created {
                    self.created = true;
                    match self.create_database() {
                        Ok(()) => return Step::Wait(Duration::ZERO, None),
                        Err(e) => self.report(e.to_string()),
                    }
                }
                let d = self.backoff.next_delay(None);
                let (what, fix) = match self.settings.endpoint.api {
                    Api::V2 => ("bucket", "create the bucket (and check org), or fix bucket"),
                    Api::V1 | Api::V3 => (
                        "database",
                        "create it, set create_database = true, or fix database",
                    ),
                };
                let msg = format!(
                    "{} answered 404 for {what} {:?} ({message}): {fix}",
                    self.settings.endpoint.base, self.settings.endpoint.target
                );
                self.report_wait(msg, d)
            }
            Outcome::Retry {
                status,
                message,
                retry_after,
            } => {
                let d = self.backoff.next_delay(retry_after);
                let status = status.map_or_else(String::new, |s| format!(" ({s})"));
                let msg = format!(
                    "{} cannot take the data now{status}: {message}",
                    self.settings.endpoint.base
                );
                self.report_wait_probing(msg, d, Some(retry_after.unwrap_or_default()))
            }
            Outcome::Unexpected { status, message } => {
                let d = self.backoff.next_delay(None);
                let msg = format!(
                    "{} answered an unexpected {status}: {message}; check url and api",
                    self.settings.endpoint.base
                );
                self.report_wait(msg, d)
            }
        }
    }

    fn log_rejected(
        &self,
        status: u16,
        message: &str,
        named: &[RejectedLine],
        lines: u64,
        refused: u64,
    ) {
        let mut detail = String::new();
        for r in named.iter().take(10) {
            let at = r
                .line_number
                .map_or_else(|| "line ?".to_owned(), |n| format!("line {n}"));
            let text = r
                .line
                .as_deref()
                .map(|l| format!(" {:?}", shorten(l, 200)))
                .unwrap_or_default();
            detail.push_str(&format!("; {at}{text}: {}", shorten(&r.reason, 300)));
        }
        if named.len() > 10 {
            detail.push_str(&format!("; and {} more", named.len() - 10));
        }
        let kept = if refused >= lines {
            "The server stored none of them; they are not resent".to_owned()
        } else {
            format!(
                "The server stored the other {} lines; the refused ones are not resent",
                lines - refused
            )
        };
        tracing::warn!(
            output = %self.settings.name,
            "the server refused {refused} of the {lines} lines of a request ({status}: {message}){detail}. {kept}"
        );
    }

    fn create_database(&self) -> Result<(), Error> {
        let ep = &self.settings.endpoint;
        let agent = &self.settings.agent;
        let res = match ep.api {
            Api::V1 => {
                let q = format!(
                    "CREATE DATABASE \"{}\"",
                    ep.target.replace('\\', "\\\\").replace('"', "\\\"")
                );
                ep.post_form(agent, "/query", &[("q", q.as_str())])
            }
            Api::V3 => {
                let json = serde_json::json!({ "db": ep.target }).to_string();
                ep.post_json(agent, "/api/v3/configure/database", &json)
            }
            Api::V2 => return Err(Error::config("buckets cannot be created by vmtel")),
        };
        match res {
            Ok(a) if (200..300).contains(&a.status) && !a.body.contains("\"error\"") => {
                tracing::info!(output = %self.settings.name, "created database {:?} (create_database = true)", ep.target);
                Ok(())
            }
            Ok(a) => Err(Error::server(format!(
                "cannot create database {:?} ({}: {})",
                ep.target,
                a.status,
                shorten(a.body.trim(), 300)
            ))),
            Err(e) => Err(Error::transport(format!(
                "cannot create database {:?}: {e}",
                ep.target
            ))),
        }
    }
}

/// Splits newline-terminated lines into two halves at a line boundary (both non-empty when
/// there are at least two lines).
pub fn split_half(body: &str) -> (&str, &str) {
    let lines = body.lines().count();
    let mut seen = 0;
    for (i, b) in body.bytes().enumerate() {
        if b == b'\n' {
            seen += 1;
            if seen == lines / 2 {
                return body.split_at(i + 1);
            }
        }
    }
    (body, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_half_cuts_at_a_line_boundary() {
        assert_eq!(split_half("a\nb\nc\nd\n"), ("a\nb\n", "c\nd\n"));
        assert_eq!(split_half("a\nb\nc\n"), ("a\n", "b\nc\n"));
        assert_eq!(split_half("a\nb\n"), ("a\n", "b\n"));
        assert_eq!(split_half("a\n"), ("a\n", ""));
    }
}
