#![doc = include_str!("wsgateway_broadcast.md")]

use std::sync::Arc;

use primitives::sync::{RwMutex, WaitGroup};
use primitives::{defer, go_named, select, Chan, GoMap};

use crate::{Budget, Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "wsgateway_broadcast",
        project: "wsgateway",
        upstream: "",
        category: "Mixed deadlock (channel & lock)",
        expected: primitives::Verdict::Deadlock,
        kernel: test_wsgateway_broadcast,
        walkthrough: include_str!("wsgateway_broadcast.md"),
        source: Source::Description(""),
        fix: Fix::Upstream("TODO"),
        file: file!(),
        budget: Budget { preemption_bound: Some(2), ..Budget::DEFAULT },
        ..Bug::DEFAULT
    }
}

/// Room in each user's outgoing queue (the bounded writer channel).
const SEND_BUFFER: usize = 1;

/// Messages the broadcaster sends to the room.
const BROADCASTS: usize = 3;

type UserId = u32;

/// A client's websocket connection. The client has stopped reading: a write blocks until the
/// connection is closed, and then fails.
struct Conn {
    closed: Chan<()>,
}

impl Conn {
    fn write(&self, _msg: &str) -> Result<(), &'static str> {
        self.closed.recv();
        Err("use of closed network connection")
    }

    fn close(&self) {
        self.closed.close();
    }
}

/// A connected user: a bounded queue of outgoing messages, drained by its writer goroutine.
struct User {
    id: UserId,
    send: Chan<String>,
    conn: Conn,
    variant: Variant,
}

impl User {
    fn new(id: UserId, variant: Variant) -> Arc<User> {
        Arc::new(User {
            id,
            send: Chan::new(SEND_BUFFER).named(&format!("user{id}.send")),
            conn: Conn {
                closed: Chan::new(0).named(&format!("user{id}.conn")),
            },
            variant,
        })
    }

    /// `SendMsg`: queues a message for the writer.
    fn send_msg(&self, msg: String) -> Result<(), String> {
        if self.variant.fixed() {
            // The fix: never wait for a slow client; drop the message and report it.
            return select! {
                send(self.send, msg) => Ok(()),
                default => Err(format!("user {}: send buffer full, message dropped", self.id)),
            };
        }
        self.send.send(msg); // blocks while the queue is full
        Ok(())
    }

    /// The writer goroutine: moves queued messages to the connection.
    fn write_pump(&self) {
        while let Some(msg) = self.send.recv() {
            if self.conn.write(&msg).is_err() {
                return;
            }
        }
    }
}

/// A chat room: its users, behind a read-write lock.
struct Room {
    mu: RwMutex,
    users: GoMap<UserId, Arc<User>>,
}

impl Room {
    fn add(&self, u: Arc<User>) {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        self.users.insert(u.id, u);
    }

    /// `BroadcastMsgToRoom`: sends `msg` to every user, under the read lock; returns the
    /// failures it reports.
    fn broadcast_msg_to_room(&self, msg: &str) -> Vec<String> {
        self.mu.rlock();
        let _runlock = defer(|| self.mu.runlock());
        let users: Vec<Arc<User>> = self.users.with(|m| m.values().cloned().collect());
        let mut failed = Vec::new();
        for u in users {
            if let Err(e) = u.send_msg(msg.to_string()) {
                failed.push(e);
            }
        }
        failed
    }

    /// Shuts the room down: every connection is closed, which ends the writers.
    fn close(&self) {
        self.mu.rlock();
        let _runlock = defer(|| self.mu.runlock());
        self.users
            .with(|m| m.values().cloned().collect::<Vec<_>>())
            .iter()
            .for_each(|u| u.conn.close());
    }
}

/// A room with one user whose client stalled; a burst of broadcasts while a second user joins;
/// then the room is shut down.
fn test_wsgateway_broadcast(variant: Variant) {
    let room = Arc::new(Room {
        mu: RwMutex::new().named("room.mu"),
        users: GoMap::new().named("room.users"),
    });
    let stalled = User::new(1, variant);
    room.add(stalled.clone());
    go_named("writePump", move || stalled.write_pump());

    let wg = WaitGroup::new().named("wg");
    wg.add(2);
    let (r, w) = (room.clone(), wg.clone());
    go_named("BroadcastMsgToRoom", move || {
        let _done = defer(|| w.done());
        for i in 0..BROADCASTS {
            let _dropped = r.broadcast_msg_to_room(&format!("msg {i}"));
        }
    });
    let (r, w) = (room.clone(), wg.clone());
    go_named("Add", move || {
        let _done = defer(|| w.done());
        r.add(User::new(2, variant));
    });
    wg.wait();
    room.close();
}
