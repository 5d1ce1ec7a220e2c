//! The eBPF capture as a [`Source`]: load and attach the programs, read the ring buffer on a
//! task, and expose the in-kernel loss counters.
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::{
    prog_misses::Misses, ring::ReaderCtx, EbpfCapture, EbpfError, KernelDrops, KernelNoise,
};
use crate::config::Config;
use crate::filter::FilterStats;
use crate::sources::source::{Source, SourceEnv, StartError, StopFuture};
use crate::telemetry::fields::Telemetry;
use crate::timefmt::Clocks;

/// The in-kernel counters: records that could not be emitted, and what the kernel's noise
/// filter dropped (published into the filter's figures).
pub struct EbpfStats {
    drops: KernelDrops,
    noise: KernelNoise,
    filter: Arc<FilterStats>,
}

impl EbpfStats {
    /// Kernel loss counters by name, summed over CPUs.
    pub fn kernel_drops(&self) -> Vec<(&'static str, u64)> {
        self.drops.snapshot()
    }

    /// Skipped runs of the programs, by what they cost (read once per call).
    pub fn misses(&self) -> Misses {
        Misses::of(&self.drops.misses_by_program())
    }

    /// Logs the programs whose runs the kernel skipped, once at shutdown.
    pub fn log_misses(&self) {
        let mut by = self.drops.misses_by_program();
        by.retain(|(_, n)| *n > 0);
        if !by.is_empty() {
            tracing::warn!(
                ?by,
                "the kernel skipped runs of these programs (recursion_misses)"
            );
        }
    }

    /// Copies the kernel's noise-rule totals into the filter's stats.
    pub fn publish_noise(&self) {
        let (per_rule, exits) = self.noise.snapshot();
        for (i, n) in per_rule.into_iter().enumerate() {
            self.filter.set_kernel_drops(i, n);
        }
        self.filter.set_kernel_exit_drops(exits);
    }
}

/// A loaded, attached capture and its ring-buffer reader.
pub struct EbpfSource {
    reader: tokio::task::JoinHandle<std::io::Result<()>>,
    stop: watch::Sender<bool>,
    /// Owns the programs and links; dropped (detaching them) after the reader drained.
    loaded: aya::Ebpf,
    stats: Arc<EbpfStats>,
    attached: super::hooks::Attached,
}

impl Source for EbpfSource {
    fn enabled(_: &Config) -> bool {
        true
    }

    fn start(cfg: &Config, env: &SourceEnv) -> Result<Self, StartError> {
        let offsets = env.offsets.clone().map_err(EbpfError::Unresolved)?;
        let noise_comms = crate::filter::noise::kernel_comm_rules(&cfg.filter.noise);
        let EbpfCapture {
            ebpf: loaded,
            ring,
            drops,
            noise,
            shed,
            attached,
        } = super::load(
            offsets,
            cfg.ebpf.ring_buffer_bytes,
            &noise_comms,
            cfg.sensor.argv_max_bytes,
            super::hooks::Ia32Plan::of(cfg.ebpf.ia32_hooks, crate::sources::ia32_entry::probe),
        )?;
        // The governor's level reaches the programs, which then drop connects at the source.
        let shed = Mutex::new(shed);
        env.shed_stats.set_hook(Box::new(move |level| {
            if let Err(e) = shed.lock().unwrap_or_else(|e| e.into_inner()).set(level) {
                tracing::warn!(error = %e, "cannot publish the shedding level to the kernel");
            }
        }));
        let (stop, shutdown) = watch::channel(false);
        let reader = tokio::spawn(super::run_reader(
            ring,
            ReaderCtx {
                tx: env.tx.clone(),
                counters: env.counters.clone(),
                shutdown,
                host: env.host.clone(),
                clocks: Clocks::now(),
                feed: env.feed.producer(),
            },
        ));
        Ok(Self {
            reader,
            stop,
            loaded,
            stats: Arc::new(EbpfStats {
                drops,
                noise,
                filter: env.filter_stats.clone(),
            }),
            attached,
        })
    }

    /// A hook this kernel lacks (or that is turned off) leaves a named blind spot; a note
    /// says what needs no hook.
    fn reason(&self) -> Option<String> {
        let a = &self.attached;
        let parts: Vec<String> = a
            .blind_spots
            .iter()
            .map(|b| format!("blind spot: {b}"))
            .chain(a.notes.iter().cloned())
            .collect();
        (!parts.is_empty()).then(|| parts.join("; "))
    }

    fn stats(&self) -> Arc<dyn Telemetry> {
        self.stats.clone()
    }

    fn stop(self: Box<Self>) -> StopFuture {
        Box::pin(async move {
            let _ = self.stop.send(true);
            match self.reader.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "ring buffer reader failed"),
                Err(e) => tracing::error!(error = %e, "ring buffer reader panicked"),
            }
            self.stats.log_misses();
            drop(self.loaded);
        })
    }
}
