//! Launching the workers: one [`Worker`] per worker lcore over the queues the plan gives
//! it, and the handle the control lcore keeps of each (its counters and queues).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::dpdk::{self, Eal, Lcore, Port};
use crate::pipeline::ports::{PortPlan, WorkerQueues};
use crate::pipeline::worker::{Worker, WorkerCounters};
use crate::pipeline::PacketStep;

/// A launched worker as the control lcore sees it.
pub(super) struct WorkerHandle {
    pub lcore: Lcore,
    pub counters: Arc<WorkerCounters>,
    pub queues: Vec<(u16, u16)>,
    pub tx: Vec<(u16, u16)>,
}

/// Launches one worker per lcore. `make(i, queues, new_worker)` builds worker `i`:
/// `new_worker(step)` makes the [`Worker`] over its queues, and `make` may adjust it.
/// Returns the launched workers and the first error.
#[allow(clippy::too_many_arguments)]
pub(super) fn launch_workers<S, F>(
    eal: &Eal,
    lcores: &[Lcore],
    plan: &PortPlan,
    ports: &[Port],
    stop: &Arc<AtomicBool>,
    tsc_hz: u64,
    verbose: bool,
    mut make: F,
) -> (Vec<WorkerHandle>, Option<String>)
where
    S: PacketStep + 'static,
    F: FnMut(
        usize,
        &WorkerQueues,
        &mut dyn FnMut(S) -> Result<Worker<S>, String>,
    ) -> Result<Worker<S>, String>,
{
    let mut workers: Vec<WorkerHandle> = Vec::with_capacity(lcores.len());
    for (i, (&lcore, wq)) in lcores.iter().zip(&plan.workers).enumerate() {
        let counters = Arc::new(WorkerCounters::default());
        let mut new_worker = |step: S| {
            let rx = wq
                .rx
                .iter()
                .filter_map(|&(p, q)| ports.iter().find(|x| x.id() == p)?.rx_queue(q))
                .collect();
            let tx = wq
                .tx
                .iter()
                .filter_map(|&(p, q)| ports.iter().find(|x| x.id() == p)?.tx_queue(q))
                .collect();
            Worker::new(
                rx,
                tx,
                step,
                Arc::clone(&counters),
                Arc::clone(stop),
                tsc_hz,
            )
        };
        let worker = match make(i, wq, &mut new_worker) {
            Ok(w) => w,
            Err(e) => return (workers, Some(e)),
        };
        say!(
            verbose,
            "worker {i}: lcore={} rx={} tx={}",
            lcore.0,
            pairs_list(&wq.rx),
            pairs_list(&wq.tx)
        );
        if let Err(e) = dpdk::launch(eal, lcore, move || worker.run()) {
            return (workers, Some(e.to_string()));
        }
        workers.push(WorkerHandle {
            lcore,
            counters,
            queues: wq.rx.clone(),
            tx: wq.tx.clone(),
        });
    }
    (workers, None)
}

pub(super) fn pairs_list(v: &[(u16, u16)]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    v.iter()
        .map(|(p, q)| format!("{p}:{q}"))
        .collect::<Vec<_>>()
        .join(",")
}
