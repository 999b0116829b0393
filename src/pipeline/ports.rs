//! Port pairing and the queue plan: how many RX/TX queues each port gets and which worker
//! polls which (port, queue). Pure logic over port capabilities, tested without DPDK.
//!
//! Rules, chosen so that no queue is ever shared between lcores (no locks on the datapath):
//!
//! * Ports forward in pairs A↔B: `0↔1, 2↔3, …` by default, or the explicit `--pair` list.
//! * Port A gets `n = min(want, A.max_rx_queues, B.max_tx_queues)` RX queues, where `want`
//!   is the number of workers if A can spread traffic with RSS and 1 otherwise.
//!   Its partner B gets the same `n` TX queues: packets from RX queue `q` of A leave on TX
//!   queue `q` of B, so each TX queue is fed by exactly one RX queue.
//! * The RX queues of all paired ports, port-major, are dealt to workers round-robin; with
//!   RSS on every port, worker `w` polls queue `w` of each port.
//! * A worker sends to port B on the TX queue that matches the first RX queue of B's
//!   partner it polls; any other TX queue of B it could use has no other user.

use std::fmt;

/// What the plan needs to know about a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortLimits {
    pub id: u16,
    pub max_rx_queues: u16,
    pub max_tx_queues: u16,
    /// The port can hash IP/TCP/UDP over several RX queues.
    pub rss: bool,
}

/// Queues of one port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortQueues {
    pub id: u16,
    /// The port it forwards to.
    pub peer: u16,
    pub rx_queues: u16,
    pub tx_queues: u16,
    /// RSS enabled (more than one RX queue).
    pub rss: bool,
}

/// What one worker lcore polls and where it sends.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerQueues {
    /// (port, RX queue) pairs, polled in this order.
    pub rx: Vec<(u16, u16)>,
    /// (port, TX queue) for each port this worker sends to.
    pub tx: Vec<(u16, u16)>,
}

/// The whole plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortPlan {
    pub pairs: Vec<(u16, u16)>,
    /// Ports in use, in id order.
    pub ports: Vec<PortQueues>,
    pub workers: Vec<WorkerQueues>,
}

/// Why a plan cannot be made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanError(pub String);

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PlanError {}

/// The default pairing of the available ports: 0↔1, 2↔3, … (by position in `ports`).
pub fn default_pairs(ports: &[u16]) -> Result<Vec<(u16, u16)>, PlanError> {
    if ports.is_empty() {
        return Err(PlanError(
            "no Ethernet ports: give EAL a device, e.g. --vdev net_null0 --vdev net_null1".into(),
        ));
    }
    if !ports.len().is_multiple_of(2) {
        return Err(PlanError(format!(
            "{} ports found ({}): ports forward in pairs, so give an even number or use --pair A:B",
            ports.len(),
            list(ports)
        )));
    }
    Ok(ports.chunks(2).map(|c| (c[0], c[1])).collect())
}

fn list(ports: &[u16]) -> String {
    ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Makes the queue plan for `pairs` over `ports` with `workers` worker lcores.
pub fn plan(
    ports: &[PortLimits],
    pairs: &[(u16, u16)],
    workers: usize,
) -> Result<PortPlan, PlanError> {
    if workers == 0 {
        return Err(PlanError(
            "no worker lcore: give EAL at least two lcores (the first is the control lcore), e.g. -l 0,1"
                .into(),
        ));
    }
    if pairs.is_empty() {
        return Err(PlanError("no port pair to forward between".into()));
    }
    let limits = |id: u16| {
        ports.iter().find(|p| p.id == id).ok_or_else(|| {
            let ids: Vec<u16> = ports.iter().map(|p| p.id).collect();
            PlanError(format!("port {id} does not exist (ports: {})", list(&ids)))
        })
    };
    // peer[id] for every port in a pair; each port in at most one pair.
    let mut peers: Vec<(u16, u16)> = Vec::new();
    for &(a, b) in pairs {
        limits(a)?;
        limits(b)?;
        for (x, y) in [(a, b), (b, a)] {
            match peers.iter().find(|&&(p, _)| p == x) {
                Some(&(_, q)) if q == y && a == b => {}
                Some(_) => {
                    return Err(PlanError(format!("port {x} appears in more than one pair")))
                }
                None => peers.push((x, y)),
            }
        }
    }
    peers.sort_unstable();

    let want = u16::try_from(workers).unwrap_or(u16::MAX);
    let mut out_ports = Vec::with_capacity(peers.len());
    for &(id, peer) in &peers {
        let me = limits(id)?;
        let them = limits(peer)?;
        let want = if me.rss { want } else { 1 };
        let rx = want.min(me.max_rx_queues).min(them.max_tx_queues);
        if rx == 0 {
            return Err(PlanError(format!(
                "port {id} cannot forward to port {peer}: no RX queue on {id} or no TX queue on {peer}"
            )));
        }
        out_ports.push(PortQueues {
            id,
            peer,
            rx_queues: rx,
            tx_queues: 0,
            rss: rx > 1,
        });
    }
    for i in 0..out_ports.len() {
        let peer = out_ports[i].peer;
        let rx_of_peer = out_ports
            .iter()
            .find(|p| p.id == peer)
            .map(|p| p.rx_queues)
            .unwrap_or(1);
        out_ports[i].tx_queues = rx_of_peer;
    }

    let mut worker_queues = vec![WorkerQueues::default(); workers];
    let mut next = 0usize;
    for p in &out_ports {
        for q in 0..p.rx_queues {
            let w = &mut worker_queues[next % workers];
            next += 1;
            w.rx.push((p.id, q));
            // Packets from (p, q) leave on the peer's TX queue q.
            if !w.tx.iter().any(|&(port, _)| port == p.peer) {
                w.tx.push((p.peer, q));
            }
        }
    }
    Ok(PortPlan {
        pairs: pairs.to_vec(),
        ports: out_ports,
        workers: worker_queues,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rss_port(id: u16) -> PortLimits {
        PortLimits {
            id,
            max_rx_queues: 1024,
            max_tx_queues: 1024,
            rss: true,
        }
    }

    fn single_queue_port(id: u16) -> PortLimits {
        PortLimits {
            id,
            max_rx_queues: 1,
            max_tx_queues: 1,
            rss: false,
        }
    }

    #[test]
    fn default_pairs_are_consecutive() {
        assert_eq!(default_pairs(&[0, 1, 2, 3]).unwrap(), vec![(0, 1), (2, 3)]);
        assert!(default_pairs(&[0, 1, 2]).unwrap_err().0.contains("--pair"));
        assert!(default_pairs(&[]).is_err());
    }

    #[test]
    fn rss_ports_get_one_queue_per_worker() {
        let p = plan(&[rss_port(0), rss_port(1)], &[(0, 1)], 2).unwrap();
        assert_eq!(
            p.ports[0],
            PortQueues {
                id: 0,
                peer: 1,
                rx_queues: 2,
                tx_queues: 2,
                rss: true
            }
        );
        assert_eq!(
            p.ports[1],
            PortQueues {
                id: 1,
                peer: 0,
                rx_queues: 2,
                tx_queues: 2,
                rss: true
            }
        );
        assert_eq!(
            p.workers[0],
            WorkerQueues {
                rx: vec![(0, 0), (1, 0)],
                tx: vec![(1, 0), (0, 0)]
            }
        );
        assert_eq!(
            p.workers[1],
            WorkerQueues {
                rx: vec![(0, 1), (1, 1)],
                tx: vec![(1, 1), (0, 1)]
            }
        );
    }

    #[test]
    fn ports_without_rss_fall_back_to_one_queue_spread_over_workers() {
        let p = plan(&[single_queue_port(0), single_queue_port(1)], &[(0, 1)], 2).unwrap();
        assert!(p
            .ports
            .iter()
            .all(|q| q.rx_queues == 1 && q.tx_queues == 1 && !q.rss));
        assert_eq!(
            p.workers[0],
            WorkerQueues {
                rx: vec![(0, 0)],
                tx: vec![(1, 0)]
            }
        );
        assert_eq!(
            p.workers[1],
            WorkerQueues {
                rx: vec![(1, 0)],
                tx: vec![(0, 0)]
            }
        );
    }

    #[test]
    fn rx_queues_are_capped_by_the_peers_tx_queues() {
        let mut b = rss_port(1);
        b.max_tx_queues = 1;
        let p = plan(&[rss_port(0), b], &[(0, 1)], 4).unwrap();
        assert_eq!(p.ports[0].rx_queues, 1);
        assert_eq!(p.ports[1].tx_queues, 1);
        assert_eq!(p.ports[1].rx_queues, 4);
        assert_eq!(p.ports[0].tx_queues, 4);
    }

    #[test]
    fn no_tx_queue_is_shared_between_workers() {
        for workers in 1..6 {
            let ports = [rss_port(0), single_queue_port(1), rss_port(2), rss_port(3)];
            let p = plan(&ports, &[(0, 1), (2, 3)], workers).unwrap();
            let mut used = Vec::new();
            for w in &p.workers {
                for &t in &w.tx {
                    assert!(!used.contains(&t), "{t:?} shared with {workers} workers");
                    used.push(t);
                    let port = p.ports.iter().find(|q| q.id == t.0).unwrap();
                    assert!(t.1 < port.tx_queues);
                }
                for &(port, q) in &w.rx {
                    assert!(q < p.ports.iter().find(|x| x.id == port).unwrap().rx_queues);
                }
            }
            let total_rx: usize = p.workers.iter().map(|w| w.rx.len()).sum();
            let want: usize = p.ports.iter().map(|q| usize::from(q.rx_queues)).sum();
            assert_eq!(total_rx, want);
        }
    }

    #[test]
    fn bad_pairs_and_worker_counts_are_errors() {
        let ports = [rss_port(0), rss_port(1), rss_port(2)];
        assert!(plan(&ports, &[(0, 1), (1, 2)], 1)
            .unwrap_err()
            .0
            .contains("more than one pair"));
        assert!(plan(&ports, &[(0, 7)], 1)
            .unwrap_err()
            .0
            .contains("does not exist"));
        assert!(plan(&ports, &[(0, 1)], 0).unwrap_err().0.contains("-l 0,1"));
        assert!(plan(&ports, &[], 1).is_err());
        let p = plan(&ports, &[(2, 2)], 2).unwrap();
        assert_eq!(
            p.ports,
            vec![PortQueues {
                id: 2,
                peer: 2,
                rx_queues: 2,
                tx_queues: 2,
                rss: true
            }]
        );
    }
}
