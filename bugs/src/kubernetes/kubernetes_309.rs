#![doc = include_str!("kubernetes_309.md")]

use std::sync::Arc;
use std::time::Duration;

use primitives::sync::Mutex;
use primitives::time;
use primitives::{defer, go_named, select, Chan, Shared, TimerMode};

use crate::{Budget, Bug, Fix, Loom, Source, Variant};

inventory::submit! {
    Bug {
        id: "kubernetes_309",
        project: "kubernetes",
        upstream: "https://github.com/kubernetes/kubernetes/pull/309",
        category: "Data race",
        expected: primitives::Verdict::Race,
        kernel: test_kubernetes309,
        walkthrough: include_str!("kubernetes_309.md"),
        goker: None,
        asplos: Some("non-blocking-bugs/kubernetes/62055090b491e971bf24b69ef54a83ca0f93b8fd.txt"),
        source: Source::Diff("62055090"),
        fix: Fix::Upstream("62055090"),
        review: "faithful: Checked against 62055090 (ASPLOS diff of `replication_controller_test.go` and `fake_etcd_client.go`), PR #309 (\"Fix #305\") and a mid-2014 copy of `replication_controller.go` in the index: same sleep-instead-of-sync races on the fake client's fields and the call counter, fix reproduced hunk by hunk.",
        file: file!(),
        loom: Loom::DoesNotApply(
            "the test runs watchControllers twice, each with its watch goroutine: four \
             goroutines besides main, and the test's timers (its sleeps, the fixed test's \
             time.After) take a slot for the runtime's timer goroutine: one more than loom's \
             five threads",
        ),
        // The fixed test's `time.After(10 * time.Millisecond)` is a watchdog: in Go it fires
        // only if the handler never runs. Eager timers would fire it first and fail the fixed
        // test for a reason that is not the bug.
        budget: Budget { timers: Some(TimerMode::Lazy), ..Budget::DEFAULT },
        ..Bug::DEFAULT
    }
}

/// `api.ReplicationController`, reduced to its `ID`.
#[derive(Clone, Debug, Default, PartialEq)]
struct ReplicationController {
    id: String,
}

/// `etcd.Response`: the action and the node's value (the controller, JSON in upstream).
struct Response {
    action: &'static str,
    value: ReplicationController,
}

/// The errors `Watch` returns.
#[derive(Debug, PartialEq)]
enum EtcdError {
    /// `etcd.ErrWatchStoppedByUser`.
    WatchStoppedByUser,
    /// The test's `fmt.Errorf("Injected error")`.
    Injected,
}

/// `util.FakeEtcdClient`: its watch fields, which `Watch` fills in for the test to use.
struct FakeEtcdClient {
    /// The fix: guards `watchChanReady`.
    chan_lock: Mutex,
    /// The fix: closed by `Watch` once the public channels are set.
    watch_chan_ready: Shared<Chan<bool>>,
    watch_response: Shared<Chan<Response>>,
    watch_stop: Shared<Chan<bool>>,
    watch_inject_error: Shared<Chan<EtcdError>>,
    variant: Variant,
}

/// `util.MakeFakeEtcdClient`.
fn make_fake_etcd_client(variant: Variant) -> FakeEtcdClient {
    FakeEtcdClient {
        chan_lock: Mutex::new().named("chanLock"),
        watch_chan_ready: Shared::new(if variant.fixed() {
            Chan::new(0).named("watchChanReady")
        } else {
            Chan::nil()
        })
        .named("watchChanReady"),
        watch_response: Shared::new(Chan::nil()).named("WatchResponse"),
        watch_stop: Shared::new(Chan::nil()).named("WatchStop"),
        watch_inject_error: Shared::new(Chan::nil()).named("WatchInjectError"),
        variant,
    }
}

impl FakeEtcdClient {
    /// `WaitToWatch` (added by the fix): waits until `Watch` has set the public channels.
    fn wait_to_watch(&self) {
        self.chan_lock.lock();
        let _unlock = defer(|| self.chan_lock.unlock());
        self.watch_chan_ready.get().recv();
    }

    /// `Watch`: hands the caller's channels to the test, then waits for a stop or an
    /// injected error.
    fn watch(&self, receiver: Chan<Response>, stop: Chan<bool>) -> Result<(), EtcdError> {
        self.watch_response.set(receiver);
        self.watch_stop.set(stop.clone());
        let injected_error: Chan<EtcdError> = Chan::new(0).named("injectedError");
        let _close_injected_error = defer(|| injected_error.close());
        self.watch_inject_error.set(injected_error.clone());

        if self.variant.fixed() {
            self.watch_chan_ready.get().close();
        }
        let _reset_watch_chan_ready = defer(|| {
            if self.variant.fixed() {
                self.chan_lock.lock();
                let _unlock = defer(|| self.chan_lock.unlock());
                self.watch_chan_ready
                    .set(Chan::new(0).named("watchChanReady"));
            }
        });

        select! {
            recv(stop) => Err(EtcdError::WatchStoppedByUser),
            recv(injected_error) -> err => {
                if self.variant.fixed() {
                    self.watch_chan_ready
                        .set(Chan::new(0).named("watchChanReady"));
                }
                // A receive on the closed channel would give the zero error; the test sends.
                Err(err.unwrap_or(EtcdError::Injected))
            },
        }
    }
}

/// The handler the test injects in place of `syncReplicationController`.
type SyncHandler = Box<dyn Fn(ReplicationController) -> Result<(), EtcdError> + Send + Sync>;

/// `controller.ReplicationManager`, reduced to what `watchControllers` uses.
struct ReplicationManager {
    etcd_client: Arc<FakeEtcdClient>,
    sync_handler: SyncHandler,
}

impl ReplicationManager {
    /// `watchControllers`: starts an etcd watch on a goroutine and hands each controller it
    /// reports to `syncHandler`, until the watch channel closes.
    fn watch_controllers(self: &Arc<Self>) {
        let watch_channel: Chan<Response> = Chan::new(0).named("watchChannel");
        let stop: Chan<bool> = Chan::new(0).named("stop");
        // Ensure that the call to watch ends.
        let _close_stop = defer(|| stop.close());
        let (rm, ch, st) = (self.clone(), watch_channel.clone(), stop.clone());
        go_named("watchControllers.func2", move || {
            let _close_watch_channel = defer(|| ch.close());
            let err = rm.etcd_client.watch(ch.clone(), st);
            if err != Err(EtcdError::WatchStoppedByUser) {
                // glog: "etcd.Watch stopped unexpectedly"
            }
        });

        loop {
            let Some(watch_response) = watch_channel.recv() else {
                // Closed: let util.Forever call us again.
                return;
            };
            // glog: "Got watch"
            match handle_watch_response(watch_response) {
                Some(controller) => {
                    let _ = (self.sync_handler)(controller);
                }
                None => continue,
            }
        }
    }
}

/// `handleWatchResponse`: the controller a "set" carries.
fn handle_watch_response(response: Response) -> Option<ReplicationController> {
    (response.action == "set").then_some(response.value)
}

/// `TestWatchControllers` (`pkg/controller/replication_controller_test.go`).
fn test_kubernetes309(variant: Variant) {
    let fake_etcd = Arc::new(make_fake_etcd_client(variant));
    let test_controller_spec =
        Arc::new(Shared::new(ReplicationController::default()).named("testControllerSpec"));
    let received_count = Arc::new(Shared::new(0).named("receivedCount"));
    let received: Chan<bool> = if variant.fixed() {
        Chan::new(0).named("received")
    } else {
        Chan::nil()
    };
    let (spec, count, recv_ch) = (
        test_controller_spec.clone(),
        received_count.clone(),
        received.clone(),
    );
    let manager = Arc::new(ReplicationManager {
        etcd_client: fake_etcd.clone(),
        sync_handler: Box::new(move |controller_spec| {
            assert_eq!(
                controller_spec,
                spec.get(),
                "the handler gets the test's controller"
            );
            if variant.fixed() {
                recv_ch.close();
            } else {
                count.set(count.get() + 1);
            }
            Ok(())
        }),
    });

    let m = manager.clone();
    go_named("watchControllers", move || m.watch_controllers());
    if variant.fixed() {
        fake_etcd.wait_to_watch();
    } else {
        time::sleep(Duration::from_millis(10));
    }

    // Test normal case
    test_controller_spec.set(ReplicationController {
        id: "foo".to_string(),
    });
    fake_etcd.watch_response.get().send(Response {
        action: "set",
        value: test_controller_spec.get(),
    });

    if variant.fixed() {
        let calls = select! {
            recv(received) => 1,
            recv(time::after(Duration::from_millis(10))) => 0,
        };
        assert_eq!(calls, 1, "Expected 1 call");
    } else {
        time::sleep(Duration::from_millis(10));
        assert_eq!(received_count.get(), 1, "Expected 1 call");
    }

    // Test error case
    fake_etcd.watch_inject_error.get().send(EtcdError::Injected);
    if !variant.fixed() {
        time::sleep(Duration::from_millis(10));
    }

    // Did everything shut down?
    // t.Errorf if it is still open: the watch did not shut down.
    assert!(fake_etcd.watch_response.get().recv().is_none());

    // Test purposeful shutdown
    let m = manager.clone();
    go_named("watchControllers", move || m.watch_controllers());
    if variant.fixed() {
        fake_etcd.wait_to_watch();
    } else {
        time::sleep(Duration::from_millis(10));
    }
    fake_etcd.watch_stop.get().send(true);
    if !variant.fixed() {
        time::sleep(Duration::from_millis(10));
    }

    // Did everything shut down?
    // t.Errorf if it is still open: the watch did not shut down.
    assert!(fake_etcd.watch_response.get().recv().is_none());
}
