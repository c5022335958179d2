//! Generate realistic controller logs for the `logs summary` benchmark and the report
//! screenshot: mostly probe results, with probe errors, smart kills after probe timeouts,
//! crashes, application timeouts, exhaustions, pauses and restart-limit hits mixed in,
//! split into `qoscntrlrYYYYMMDDHHmm.log` files the way the controller rotates them.
//!
//! ```text
//! cargo run --release --example gen_logs -- OUT_DIR [--bytes N] [--file-bytes N]
//!     [--interval SECS] [--incident-every PROBES] [--start "YYYY/MM/DD HH:MM:SS"] [--seed N]
//! ```

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use qoscntrlr::review::Stamp;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*: fast, deterministic, good enough for synthetic latencies.
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// A latency with a long tail: mostly 5–60 ms, sometimes seconds.
    fn latency(&mut self) -> u64 {
        match self.below(1000) {
            0..=899 => 5 + self.below(40),
            900..=989 => 40 + self.below(300),
            990..=998 => 300 + self.below(2000),
            _ => 2000 + self.below(20_000),
        }
    }
}

struct Args {
    out: PathBuf,
    bytes: u64,
    file_bytes: u64,
    interval: i64,
    incident_every: u64,
    start: Stamp,
    seed: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(
        args.next()
            .ok_or("usage: gen_logs OUT_DIR [--bytes N] ...")?,
    );
    let mut parsed = Args {
        out,
        bytes: 1 << 30,
        file_bytes: 50 << 20,
        interval: 1,
        incident_every: 200_000,
        start: Stamp::parse_arg("2024-01-01 00:00:00", false).ok_or("start")?,
        seed: 0x5eed,
    };
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<u64>()
                .map_err(|e| format!("{flag} {value}: {e}"))
        };
        match flag.as_str() {
            "--bytes" => parsed.bytes = number()?,
            "--file-bytes" => parsed.file_bytes = number()?.max(4096),
            "--interval" => parsed.interval = number()?.max(1) as i64,
            "--incident-every" => parsed.incident_every = number()?.max(10),
            "--seed" => parsed.seed = number()?.max(1),
            "--start" => {
                parsed.start = Stamp::parse_arg(&value, false)
                    .ok_or_else(|| format!("--start {value}: not a time"))?
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(parsed)
}

struct Writer {
    args: Args,
    file: Option<BufWriter<File>>,
    file_written: u64,
    total: u64,
    now: i64,
    restarts_in_row: u32,
}

impl Writer {
    fn line(&mut self, text: &str) -> std::io::Result<()> {
        if self.file.is_none() || self.file_written >= self.args.file_bytes {
            if let Some(mut file) = self.file.take() {
                file.flush()?;
            }
            let stamp = Stamp(self.now).to_string();
            let digits: String = stamp.chars().filter(char::is_ascii_digit).collect();
            let mut path = self
                .args
                .out
                .join(format!("qoscntrlr{}.log", &digits[..12]));
            let mut n = 1;
            while path.exists() {
                path = self
                    .args
                    .out
                    .join(format!("qoscntrlr{}-{n}.log", &digits[..12]));
                n += 1;
            }
            self.file = Some(BufWriter::with_capacity(1 << 20, File::create(path)?));
            self.file_written = 0;
        }
        let line = format!("{} {text}\n", Stamp(self.now));
        self.file_written += line.len() as u64;
        self.total += line.len() as u64;
        match &mut self.file {
            Some(file) => file.write_all(line.as_bytes()),
            None => Ok(()),
        }
    }

    fn tick(&mut self, secs: i64) {
        self.now += secs;
    }

    fn start_server(&mut self, rng: &mut Rng) -> std::io::Result<()> {
        self.line("QoS Kill: Starting server")?;
        self.line("QoS Controller: OpMsg=START Type=QOS ObjectType=ServerName ObjectValue=CN=app01/O=acme")?;
        self.tick(5 + rng.below(40) as i64);
        self.line("QoS Controller: OpMsg=READY Type=SERVER")?;
        self.line("QoS Controller: Server is ready to process requests")
    }

    fn smart_kill(&mut self, rng: &mut Rng, detection: &[&str]) -> std::io::Result<()> {
        for line in detection {
            self.line(line)?;
        }
        self.tick(1);
        self.line("QoS Kill: Triggering failover...")?;
        self.tick(2);
        self.line("QoS Kill: Running nsd...")?;
        self.tick(20 + rng.below(150) as i64);
        let path = format!(
            "QoS Kill: Diagnostics written to /var/qos/diagnostics/nsd_{}.log",
            self.now
        );
        self.line(&path)?;
        self.line("QoS Kill: Running nsd -kill")?;
        self.tick(2 + rng.below(60) as i64);
        self.line("QoS Kill: Setting kill complete.")?;
        self.tick(3);
        self.line("QoS Kill: Restarting DominoStarter thread")?;
        self.start_server(rng)
    }
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("gen_logs: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = std::fs::create_dir_all(&args.out) {
        eprintln!("gen_logs: {}: {e}", args.out.display());
        std::process::exit(1);
    }
    let mut rng = Rng(args.seed);
    let now = args.start.0;
    let mut w = Writer {
        args,
        file: None,
        file_written: 0,
        total: 0,
        now,
        restarts_in_row: 0,
    };
    if let Err(e) = generate(&mut w, &mut rng) {
        eprintln!("gen_logs: {e}");
        std::process::exit(1);
    }
    eprintln!(
        "gen_logs: wrote {} bytes to {}",
        w.total,
        w.args.out.display()
    );
}

fn generate(w: &mut Writer, rng: &mut Rng) -> std::io::Result<()> {
    w.line("QoS Controller: Starting QOSPipeWatcher")?;
    w.line("QoS Controller: QOS_PROBE_TIMEOUT=5 minutes")?;
    w.line("QoS Controller: QOS_RESTART_LIMIT_MAXIMUM=3")?;
    w.start_server(rng)?;
    while w.total < w.args.bytes {
        w.tick(w.args.interval);
        if rng.below(w.args.incident_every) == 0 {
            match rng.below(6) {
                0 | 1 => {
                    w.tick(300);
                    w.smart_kill(
                        rng,
                        &[
                            "The probe thread has not received a message from qosprobe within the timeout period.",
                            "QoS Probe: The qosprobe addin has timed out, is not responding, or is not running.",
                            "QoS Controller: OpMsg=TIMEOUT Type=PROBE TimeDate=null",
                            "QoS Controller: The controller has received a probe timeout.",
                        ],
                    )?;
                }
                2 => {
                    w.line("QoS Controller: Server CN=app01/O=acme has crashed.")?;
                    w.line("QoS Controller: Server exit: killed by SIGSEGV (core dumped)")?;
                    w.restarts_in_row += 1;
                    if w.restarts_in_row >= 3 {
                        w.line("QoS Controller: Restart limit reached: 3 restarts within 30 minutes; server left down (FAULTED)")?;
                        w.tick(1800);
                        w.line("QoS Controller: Command clear-fault from uid 0")?;
                        w.restarts_in_row = 0;
                    }
                    w.tick(5);
                    w.start_server(rng)?;
                }
                3 => {
                    w.line("QoS Applications: Application COMPACT[mail/big.nsf] has made no progress for 600 seconds")?;
                    w.smart_kill(rng, &[])?;
                }
                4 => {
                    w.line("QoS Controller: Server has exhausted memory (2100 MB > 2048 MB)")?;
                    w.smart_kill(rng, &[])?;
                }
                _ => {
                    w.line("QoS Controller: Command pause from uid 0")?;
                    w.line("QoS Controller: Paused by uid 0")?;
                    w.tick(600);
                    w.line("QoS Controller: Resumed by uid 0")?;
                }
            }
            continue;
        }
        if rng.below(500) == 0 {
            w.line("QoS Probe: ERROR: connect: Connection refused")?;
        } else {
            let line = format!("QoS Probe: SUCCESS ({}ms)", rng.latency());
            w.line(&line)?;
        }
    }
    if let Some(file) = &mut w.file {
        file.flush()?;
    }
    Ok(())
}
