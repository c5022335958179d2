//! The resource sampling pass: the server's tree (or cgroup), the host and filesystem
//! probes, turned into the readings the core's rules decide on and the usage file.

use std::time::{Duration, Instant};

use chrono::Local;

use crate::core::{Component, Event, StateName};
use crate::metrics::ResourceGauges;
use crate::rules::{Item, Reading, Readings};
use crate::sampler::Sample;

use super::Shell;

impl Shell {
    /// One sampling pass: the server's tree, then every other item a rule watches;
    /// the pass goes to the usage file and, as one event, to the core's rules.
    pub(super) fn sample_resources(&mut self) {
        let Some(server) = self.server.clone() else {
            return;
        };
        if !matches!(self.ctl.state(), StateName::Starting | StateName::Ready) {
            return;
        }
        let now = Instant::now();
        let extra: Vec<i32> = Vec::new();
        let tree = match &self.containment.active {
            Some(c) => self.sampler.sample_cgroup(
                &c.server,
                server.pid,
                &self.cfg.data_directory,
                now,
                self.cfg.max_open_files > 0 || self.ctl.rule_items().contains(&Item::OpenFiles),
            ),
            None => self
                .sampler
                .sample(server.pid, &extra, &self.cfg.data_directory, now),
        };
        self.check_oom_kills();
        let rule_items = self.ctl.rule_items();
        // The tree's figures are always recorded (the report charts them); other items
        // only when a rule watches them.
        let mut items = vec![Item::Memory, Item::Cpu, Item::OpenFiles, Item::Threads];
        for item in rule_items {
            if !items.contains(&item) {
                items.push(item);
            }
        }
        let mut pass: Vec<(Item, Reading)> = Vec::with_capacity(items.len());
        for item in items {
            let reading = self.read_item(&item, &tree, now);
            pass.push((item, reading));
        }
        let wall = Local::now();
        if let Some(e) = self.usage.record(wall, &pass) {
            self.line(Component::Controller, format!("Usage file: {e}"));
        }
        let readings: Readings = pass.into_iter().collect();
        self.queue.push_back(Event::ResourcesSampled { readings });
        // An error means the server has just exited; its exit event tells the story.
        if let Ok(sample) = tree {
            self.metrics.resources = Some(ResourceGauges {
                memory_bytes: sample.rss_bytes,
                cpu_percent: sample.cpu_percent.unwrap_or(0.0),
                open_files: sample.open_files,
                threads: sample.threads,
                disk_free_bytes: sample.disk_free_bytes,
            });
            self.last_sample = Some((sample, wall));
        }
    }

    /// One item's reading for this pass.
    pub(super) fn read_item(
        &mut self,
        item: &Item,
        tree: &Result<Sample, crate::sampler::SampleError>,
        now: Instant,
    ) -> Reading {
        let tree_value = |f: fn(&Sample) -> Option<f64>, why: &str| match tree {
            Ok(sample) => f(sample).map_or_else(|| Reading::Missing(why.into()), Reading::Value),
            Err(e) => Reading::Missing(e.to_string()),
        };
        const ALWAYS: &str = "not measured";
        // Probes may take long on a sick filesystem: never longer than an interval,
        // nor than 10 s.
        let limit = self
            .cfg
            .resource_interval
            .clamp(Duration::from_secs(1), Duration::from_secs(10));
        match item {
            Item::Memory => tree_value(|s| Some(s.rss_bytes as f64), ALWAYS),
            Item::Cpu => tree_value(
                |s| s.cpu_percent,
                "first sample (CPU is measured between two)",
            ),
            Item::OpenFiles => tree_value(
                |s| s.open_files_counted.then_some(s.open_files as f64),
                "open files are not counted for this cgroup sample",
            ),
            Item::Threads => tree_value(|s| Some(s.threads as f64), ALWAYS),
            Item::HostMemory => self.host.memory_percent(),
            Item::HostCpu => self.host.cpu_percent(),
            Item::Load1 => self.host.load1(),
            // The data directory's free space comes with the tree sample (as the
            // QOS_MIN_DISK_FREE limit always did); other paths are probed apart.
            Item::DiskFree(path) if *path == self.cfg.data_directory && tree.is_ok() => {
                tree_value(|s| Some(s.disk_free_bytes as f64), ALWAYS)
            }
            Item::DiskFree(path) => {
                let path = path.clone();
                let what = format!("free space of {}", path.display());
                self.fs_probes
                    .entry(item.clone())
                    .or_default()
                    .poll(now, limit, &what, move || crate::host::disk_free(&path))
            }
            Item::WriteLatency => {
                let dir = self.cfg.data_directory.clone();
                let what = format!("write + fsync in {}", dir.display());
                self.fs_probes
                    .entry(item.clone())
                    .or_default()
                    .poll(now, limit, &what, move || crate::host::write_probe(&dir))
            }
            // Pressure is the server's own cgroup's (QOS_CGROUP containment); without
            // one there is nothing of the server's alone to measure.
            Item::MemoryPressure | Item::CpuPressure | Item::IoPressure => {
                if self.containment.active.is_none() {
                    return Reading::Missing(
                        "the server is not contained in a cgroup of its own (QOS_CGROUP)".into(),
                    );
                }
                let figure = |s: &Sample| match item {
                    Item::MemoryPressure => s.memory_pressure,
                    Item::CpuPressure => s.cpu_pressure,
                    _ => s.io_pressure,
                };
                match tree {
                    Ok(sample) => figure(sample).map_or_else(
                        || Reading::Missing("no pressure file in the server's cgroup".into()),
                        Reading::Value,
                    ),
                    Err(e) => Reading::Missing(e.to_string()),
                }
            }
        }
    }
}
