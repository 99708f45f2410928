#![doc = include_str!("wsgateway_broadcast.md")]

use std::ops::Deref;
use std::sync::Arc;

use primitives::sync::{RwMutex, WaitGroup};
use primitives::{defer, go_named, select, Chan, GoMap, Shared};

use crate::{Budget, Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "wsgateway_broadcast",
        project: "wsgateway",
        upstream: "https://cnblogs.com/wishFreedom/p/16473195.html",
        category: "Mixed deadlock (channel & lock)",
        expected: primitives::Verdict::Deadlock,
        kernel: test_wsgateway_broadcast,
        walkthrough: include_str!("wsgateway_broadcast.md"),
        source: Source::Description("https://cnblogs.com/wishFreedom/p/16473195.html"),
        fix: Fix::Ours(
            "no upstream repository or commit: the post shows the buggy code only as excerpts; \
             the fixed variant is the non-blocking send the catalogue records for it (select \
             with default in connectionImpl.Write), not checked against the post's own fix, whose \
             closing summary could not be reached",
        ),
        review: "faithful after mends: Checked against the blog's English rendering (yzsam.com) and the beginning of its cnblogs original, and the catalogue's fix: the broadcast blocking on a full per-connection channel under the user map's read lock, with Add and later readers piling up, is what the post shows; the port is honest that its test and fix are its own, but misses the original post and carries a stale trace.",
        file: file!(),
        budget: Budget { preemption_bound: Some(2), ..Budget::DEFAULT },
        ..Bug::DEFAULT
    }
}

/// Room in a connection's `writer` channel (the post's is 10).
const WRITER_BUFFER: usize = 1;

/// Messages the broadcaster sends to the room.
const BROADCASTS: usize = 3;

/// `MsgData`: what goes through a connection's `writer` channel.
type MsgData = String;

/// The client's websocket, as the connection's writer sees it (ours: the post does not show
/// the writer). A stalled client has stopped reading: a write blocks until the socket is
/// closed, and then fails.
struct WebSocket {
    stalled: bool,
    closed: Chan<()>,
}

impl WebSocket {
    fn write_message(&self, _data: &MsgData) -> Result<(), &'static str> {
        if self.stalled {
            self.closed.recv();
            return Err("use of closed network connection");
        }
        Ok(())
    }

    fn close(&self) {
        self.closed.close();
    }
}

/// `connectionImpl`: a device's connection, with its bounded `writer` channel.
struct ConnectionImpl {
    writer: Chan<MsgData>,
    ws: WebSocket,
    variant: Variant,
}

impl ConnectionImpl {
    /// `Write`: queues the data for the connection's writer goroutine.
    fn write(&self, data: String) -> Result<(), String> {
        let ws_msg_data: MsgData = data;
        if self.variant.fixed() {
            // The fix: never wait for a slow client; drop the message and report it.
            return select! {
                send(self.writer, ws_msg_data) => Ok(()),
                default => Err("writer full, message dropped".to_string()),
            };
        }
        self.writer.send(ws_msg_data); // `c.writer <- wsMsgData`: blocks while it is full
        Ok(())
    }

    /// The writer goroutine (ours): moves queued messages to the websocket, logging failures,
    /// until the `writer` channel is closed.
    fn write_loop(&self) {
        while let Some(msg) = self.writer.recv() {
            let _logged = self.ws.write_message(&msg);
        }
    }
}

/// `UserDevice`: one of a user's connected devices.
struct UserDevice {
    uid: i64,
    conn: ConnectionImpl,
}

impl UserDevice {
    fn new(uid: i64, stalled: bool, variant: Variant) -> Arc<UserDevice> {
        Arc::new(UserDevice {
            uid,
            conn: ConnectionImpl {
                writer: Chan::new(WRITER_BUFFER).named(&format!("device{uid}.writer")),
                ws: WebSocket {
                    stalled,
                    closed: Chan::new(0).named(&format!("device{uid}.ws")),
                },
                variant,
            },
        })
    }

    /// `UID`.
    fn uid(&self) -> i64 {
        self.uid
    }

    /// `SendMsg`: writes the message to the device's connection; an error is only logged.
    fn send_msg(&self, msg: &str) {
        if let Err(_write_error) = self.conn.write(msg.to_string()) {
            // `ud.L.Debug("Write error", zap.Error(err))`
        }
    }
}

/// `User`: a user and their devices.
struct User {
    devices: Shared<Vec<Arc<UserDevice>>>,
}

impl User {
    fn new(uid: i64) -> Arc<User> {
        Arc::new(User {
            devices: Shared::new(Vec::new()).named(&format!("user{uid}.devices")),
        })
    }

    /// `AddDevice`; returns the number of devices (the post's `remain`, whose meaning it does
    /// not show).
    fn add_device(&self, device: Arc<UserDevice>) -> usize {
        self.devices.write(|d| {
            d.push(device);
            d.len()
        })
    }

    /// `SendMsg` (its body is not in the post): sends to each of the user's devices.
    fn send_msg(&self, msg: &str) {
        for device in self.devices.get() {
            device.send_msg(msg);
        }
    }
}

/// `userManager`: every connected user, behind the embedded `sync.RWMutex`.
struct UserManager {
    rw_mutex: RwMutex,
    users: GoMap<i64, Arc<User>>,
}

impl Deref for UserManager {
    type Target = RwMutex;
    fn deref(&self) -> &RwMutex {
        &self.rw_mutex
    }
}

impl UserManager {
    fn new() -> UserManager {
        UserManager {
            rw_mutex: RwMutex::new().named("userManager"),
            users: GoMap::new().named("m.users"),
        }
    }

    /// `BroadcastMsgToRoom`: sends the message to every user, under the read lock.
    fn broadcast_msg_to_room(&self, msg: &str, _room_id: &[i64]) {
        self.rlock();
        let _runlock = defer(|| self.runlock());
        let users: Vec<Arc<User>> = self.users.with(|m| m.values().cloned().collect());
        for user in users {
            user.send_msg(msg);
        }
    }

    /// `Add`: registers a device, creating its user if needed, under the write lock.
    fn add(&self, device: Arc<UserDevice>) -> (Arc<User>, usize) {
        let uid = device.uid();
        self.lock();
        let _unlock = defer(|| self.unlock());
        let user = match self.users.get(&uid) {
            Some(user) => user,
            None => {
                let user = User::new(uid);
                self.users.insert(uid, user.clone());
                user
            }
        };
        let remain = user.add_device(device);
        (user, remain)
    }

    /// Every registered device (ours, for the test's shutdown).
    fn devices(&self) -> Vec<Arc<UserDevice>> {
        self.rlock();
        let _runlock = defer(|| self.runlock());
        let users: Vec<Arc<User>> = self.users.with(|m| m.values().cloned().collect());
        users.iter().flat_map(|u| u.devices.get()).collect()
    }
}

/// The test (ours): a user whose client stopped reading, a burst of broadcasts while a second
/// user joins, then the gateway shuts down.
fn test_wsgateway_broadcast(variant: Variant) {
    let m = Arc::new(UserManager::new());
    let stalled = UserDevice::new(1, true, variant);
    m.add(stalled.clone());
    go_named("writer", move || stalled.conn.write_loop());

    let broadcasts = WaitGroup::new().named("broadcasts");
    broadcasts.add(1);
    let (m2, b) = (m.clone(), broadcasts.clone());
    go_named("BroadcastMsgToRoom", move || {
        let _done = defer(|| b.done());
        for i in 0..BROADCASTS {
            m2.broadcast_msg_to_room(&format!("msg {i}"), &[1]);
        }
    });

    let joined = WaitGroup::new().named("joined");
    joined.add(1);
    let joining = UserDevice::new(2, false, variant);
    let (m2, j, d) = (m.clone(), joined.clone(), joining.clone());
    go_named("Add", move || {
        let _done = defer(|| j.done());
        m2.add(d);
    });
    joined.wait();
    go_named("writer", move || joining.conn.write_loop());

    // Shutdown: close every websocket (a stalled write then fails), wait for the broadcasts,
    // then close the writer channels so that the writers end.
    let devices = m.devices();
    devices.iter().for_each(|d| d.conn.ws.close());
    broadcasts.wait();
    devices.iter().for_each(|d| d.conn.writer.close());
}
