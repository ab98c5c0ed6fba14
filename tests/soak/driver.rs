//! A swarm owned by one task that takes commands from others: dial and answer once the new
//! connection is established, identified and pinged; close a connection; add and remove
//! listeners; say how many connections are open. It notes everything else that happens on its
//! side, for the summary.

use std::collections::{BTreeMap, HashMap};

use futures::{
    StreamExt,
    channel::{mpsc, oneshot},
};
use libp2p::{
    Multiaddr, PeerId, Swarm,
    core::transport::ListenerId,
    identify,
    multiaddr::Protocol,
    ping,
    swarm::{
        ConnectionId, SwarmEvent,
        dial_opts::{DialOpts, PeerCondition},
    },
};
use tokio::task::JoinHandle;

use crate::util::swarm::{Behaviour, BehaviourEvent};

enum Command {
    Dial {
        peer: PeerId,
        addr: Multiaddr,
        reply: oneshot::Sender<Result<ConnectionId, String>>,
    },
    Close {
        connection: ConnectionId,
        reply: oneshot::Sender<()>,
    },
    Listen {
        addr: Multiaddr,
        reply: oneshot::Sender<(ListenerId, Multiaddr)>,
    },
    Unlisten {
        id: ListenerId,
        reply: oneshot::Sender<()>,
    },
    Connections {
        reply: oneshot::Sender<u32>,
    },
}

/// What a swarm saw, returned when its task ends.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    pub(crate) inbound: usize,
    pub(crate) outbound: usize,
    /// Closed connections by cause (`None` when closed on purpose, by either side).
    pub(crate) closed: BTreeMap<String, usize>,
    /// Events that should not happen: incoming connection errors, listener errors, failed
    /// pings.
    pub(crate) errors: Vec<String>,
}

/// Commands a driven swarm. Cloning shares the swarm; its task ends when every handle is gone.
#[derive(Clone)]
pub(crate) struct Driven {
    pub(crate) peer: PeerId,
    commands: mpsc::UnboundedSender<Command>,
}

impl Driven {
    /// Dials `peer` at `addr` with a new connection (never reusing one) and waits until it is
    /// established, identify has received the peer's information and a ping has succeeded on it.
    pub(crate) async fn connect(
        &self,
        peer: PeerId,
        addr: Multiaddr,
    ) -> Result<ConnectionId, String> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Dial { peer, addr, reply });
        answer.await.expect("the driver answers")
    }

    /// Closes `connection` and waits until it is closed.
    pub(crate) async fn close(&self, connection: ConnectionId) {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Close { connection, reply });
        answer.await.expect("the driver answers");
    }

    /// Listens on `addr`; the listener's id and its first loopback address.
    pub(crate) async fn listen(&self, addr: &str) -> (ListenerId, Multiaddr) {
        let (reply, answer) = oneshot::channel();
        let addr = addr.parse().expect("multiaddr");
        self.send(Command::Listen { addr, reply });
        answer.await.expect("the driver answers")
    }

    /// Removes listener `id` and waits until it is closed.
    pub(crate) async fn unlisten(&self, id: ListenerId) {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Unlisten { id, reply });
        answer.await.expect("the driver answers");
    }

    /// How many connections the swarm has open.
    pub(crate) async fn connections(&self) -> u32 {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Connections { reply });
        answer.await.expect("the driver answers")
    }

    fn send(&self, command: Command) {
        self.commands
            .unbounded_send(command)
            .expect("the driver runs while handles exist");
    }
}

/// A dial waiting for its connection to be identified and pinged.
struct Pending {
    reply: oneshot::Sender<Result<ConnectionId, String>>,
    identified: bool,
    pinged: bool,
}

/// Starts the task that owns `swarm`.
pub(crate) fn drive(mut swarm: Swarm<Behaviour>) -> (Driven, JoinHandle<Seen>) {
    let peer = *swarm.local_peer_id();
    let (commands, mut inbox) = mpsc::unbounded();
    let task = tokio::spawn(async move {
        let mut seen = Seen::default();
        let mut pending: HashMap<ConnectionId, Pending> = HashMap::new();
        let mut closing: HashMap<ConnectionId, oneshot::Sender<()>> = HashMap::new();
        let mut listening: HashMap<ListenerId, oneshot::Sender<(ListenerId, Multiaddr)>> =
            HashMap::new();
        let mut unlistening: HashMap<ListenerId, oneshot::Sender<()>> = HashMap::new();
        loop {
            let event = tokio::select! {
                command = inbox.next() => {
                    let Some(command) = command else { break };
                    match command {
                        Command::Dial { peer, addr, reply } => {
                            let opts = DialOpts::peer_id(peer)
                                .addresses(vec![addr])
                                .condition(PeerCondition::Always)
                                .build();
                            let id = opts.connection_id();
                            match swarm.dial(opts) {
                                Ok(()) => {
                                    pending.insert(id, Pending { reply, identified: false, pinged: false });
                                }
                                Err(e) => {
                                    let _ = reply.send(Err(format!("dial: {e}")));
                                }
                            }
                        }
                        Command::Close { connection, reply } => {
                            if swarm.close_connection(connection) {
                                closing.insert(connection, reply);
                            } else {
                                let _ = reply.send(());
                            }
                        }
                        Command::Listen { addr, reply } => {
                            let id = swarm.listen_on(addr).expect("listen_on");
                            listening.insert(id, reply);
                        }
                        Command::Unlisten { id, reply } => {
                            if swarm.remove_listener(id) {
                                unlistening.insert(id, reply);
                            } else {
                                let _ = reply.send(());
                            }
                        }
                        Command::Connections { reply } => {
                            let _ = reply.send(swarm.network_info().connection_counters().num_connections());
                        }
                    }
                    continue;
                }
                event = swarm.select_next_some() => event,
            };
            let mut done = None;
            match event {
                SwarmEvent::ConnectionEstablished { endpoint, .. } => {
                    if endpoint.is_dialer() {
                        seen.outbound += 1;
                    } else {
                        seen.inbound += 1;
                    }
                }
                SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                    connection_id,
                    ..
                })) => {
                    if let Some(p) = pending.get_mut(&connection_id) {
                        p.identified = true;
                        done = Some(connection_id);
                    }
                }
                SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event {
                    connection,
                    result,
                    ..
                })) => match result {
                    Ok(_) => {
                        if let Some(p) = pending.get_mut(&connection) {
                            p.pinged = true;
                            done = Some(connection);
                        }
                    }
                    Err(e) => seen.errors.push(format!("ping on {connection}: {e}")),
                },
                SwarmEvent::OutgoingConnectionError {
                    connection_id,
                    error,
                    ..
                } => {
                    if let Some(p) = pending.remove(&connection_id) {
                        let _ = p.reply.send(Err(format!("outgoing connection: {error}")));
                    }
                }
                SwarmEvent::ConnectionClosed {
                    connection_id,
                    cause,
                    ..
                } => {
                    let cause = cause.map_or_else(|| "None".to_string(), |c| format!("{c:?}"));
                    *seen.closed.entry(cause.clone()).or_default() += 1;
                    if let Some(reply) = closing.remove(&connection_id) {
                        let _ = reply.send(());
                    }
                    if let Some(p) = pending.remove(&connection_id) {
                        let _ = p
                            .reply
                            .send(Err(format!("closed before identify and ping: {cause}")));
                    }
                }
                SwarmEvent::NewListenAddr {
                    listener_id,
                    address,
                } => {
                    if is_loopback(&address)
                        && let Some(reply) = listening.remove(&listener_id)
                    {
                        let _ = reply.send((listener_id, address));
                    }
                }
                SwarmEvent::ListenerClosed { listener_id, .. } => {
                    if let Some(reply) = unlistening.remove(&listener_id) {
                        let _ = reply.send(());
                    }
                }
                SwarmEvent::IncomingConnectionError { error, .. } => {
                    seen.errors.push(format!("incoming connection: {error}"));
                }
                SwarmEvent::ListenerError { error, .. } => {
                    seen.errors.push(format!("listener: {error}"));
                }
                _ => {}
            }
            if let Some(id) = done
                && pending.get(&id).is_some_and(|p| p.identified && p.pinged)
                && let Some(p) = pending.remove(&id)
            {
                let _ = p.reply.send(Ok(id));
            }
        }
        seen
    });
    (Driven { peer, commands }, task)
}

fn is_loopback(addr: &Multiaddr) -> bool {
    match addr.iter().next() {
        Some(Protocol::Ip4(ip)) => ip.is_loopback(),
        Some(Protocol::Ip6(ip)) => ip.is_loopback(),
        _ => false,
    }
}
