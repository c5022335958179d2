//! Throughput of the pipe (benchmark, run by bench/messages-bench.sh in release mode):
//! messages parsed and handed to a consumer per second on one core, while a 200 ms
//! "probe" timer on the same runtime keeps its cadence. Prints numbers only.

use std::io::Write;
use std::os::unix::net::UnixStream as StdStream;
use std::time::{Duration, Instant};

use qoscntrlr::pipe::{bind, serve, PipeEvent};

#[test]
#[ignore = "benchmark: bench/messages-bench.sh"]
fn bench_pipe_throughput_with_probe_cadence() {
    const CLIENTS: usize = 4;
    const PER_CLIENT: usize = 250_000;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    tokio::task::LocalSet::new().block_on(&rt, async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qoscntrlr.pipe");
        let listener = bind(&path, None).await.unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel(4096);
        tokio::task::spawn_local(serve(listener, tx));

        // The probe stand-in: how late does a 200 ms tick fire under the flood?
        let lateness = std::rc::Rc::new(std::cell::Cell::new(Duration::ZERO));
        let ticks = std::rc::Rc::new(std::cell::Cell::new(0u32));
        let (late, count) = (lateness.clone(), ticks.clone());
        let probe = tokio::task::spawn_local(async move {
            let mut next = tokio::time::Instant::now() + Duration::from_millis(200);
            loop {
                tokio::time::sleep_until(next).await;
                let l = tokio::time::Instant::now() - next;
                late.set(late.get().max(l));
                count.set(count.get() + 1);
                next += Duration::from_millis(200);
            }
        });

        let line = r"OpMsg=PROGRESS Type=FIXUP ObjectType=DB ObjectValue=C:\Program Files\HCL\Domino\Data\ddm.nsf TimeDate=20120508T003826,18-04";
        let writers: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let mut c = StdStream::connect(&path).unwrap();
                    let mut batch = String::new();
                    for _ in 0..1000 {
                        batch.push_str(line);
                        batch.push('\n');
                    }
                    for _ in 0..PER_CLIENT / 1000 {
                        c.write_all(batch.as_bytes()).unwrap();
                    }
                })
            })
            .collect();

        let started = Instant::now();
        let (mut lines, mut bytes) = (0usize, 0usize);
        while lines < CLIENTS * PER_CLIENT {
            match tokio::time::timeout(Duration::from_secs(2), rx.recv()).await {
                Ok(Some(PipeEvent::Line { message, .. })) => {
                    // "Handling": what the runtime does with each — its log text.
                    bytes += message.log_text(|| "20120508T003826,18-04".into()).len();
                    lines += 1;
                }
                Ok(Some(other)) => panic!("{other:?}"),
                Ok(None) | Err(_) => break,
            }
        }
        let elapsed = started.elapsed();
        probe.abort();
        for w in writers {
            w.join().unwrap();
        }
        println!(
            "pipe: {lines} messages handled in {elapsed:?} = {:.0} messages/s ({CLIENTS} clients, {} MB logged text)",
            lines as f64 / elapsed.as_secs_f64(),
            bytes / 1_000_000
        );
        println!(
            "pipe: 200 ms probe timer: {} ticks, worst lateness {:?}",
            ticks.get(),
            lateness.get()
        );
    });
}
