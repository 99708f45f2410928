#![doc = include_str!("kubernetes_35672.md")]

use std::sync::Arc;
use std::time::Duration;

use primitives::sync::RwMutex;
use primitives::time::{self, Instant, Timer};
use primitives::{defer, go_named, select, Chan, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "kubernetes_35672",
        project: "kubernetes",
        upstream: "https://github.com/kubernetes/kubernetes/pull/35672",
        category: "Communication deadlock (channel)",
        expected: primitives::Verdict::Leak,
        kernel: test_kubernetes35672,
        walkthrough: include_str!("kubernetes_35672.md"),
        asplos: Some("blocking-bugs/kubernetes/991674380b7773d73afaeafeac6242bf3b6e6001.txt"),
        source: Source::Diff("99167438"),
        fix: Fix::Upstream("99167438"),
        review: "faithful after mends: Checked against the 99167438 diff (ASPLOS), issues #35015 and #39734: kernel follows reflector.go's resync goroutine, upstream's cancelCh fix as a switch, leak verdict right; the stated reason for loom's bound 1 contradicts the crate's rotating select and must be restated.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// An error (`error`); its text does not matter here.
#[derive(Debug)]
struct Error;

/// The reflector's store; a fake whose operations always succeed.
struct FakeStore;

impl FakeStore {
    /// `Replace`.
    fn replace(&self) -> Result<(), Error> {
        Ok(())
    }

    /// `Resync`: re-queues every item.
    fn resync(&self) -> Result<(), Error> {
        Ok(())
    }
}

/// The reflector's `ListerWatcher`; a fake whose `Watch` fails, as an API server that is
/// going away makes it do.
struct FakeListerWatcher;

impl FakeListerWatcher {
    /// `List`: the resource version of the list.
    fn list(&self) -> Result<String, Error> {
        Ok("1".to_string())
    }

    /// `Watch`.
    fn watch(&self) -> Result<(), Error> {
        Err(Error)
    }
}

/// `cache.Reflector`.
struct Reflector {
    store: FakeStore,
    lister_watcher: FakeListerWatcher,
    resync_period: Duration,
    next_resync: Shared<Instant>,
    last_sync_resource_version: Shared<String>,
    last_sync_resource_version_mutex: RwMutex,
    variant: Variant,
}

/// `resyncChan`'s cleanup function: stops the resync timer.
type Cleanup = Arc<dyn Fn() -> bool + Send + Sync>;

impl Reflector {
    /// `resyncChan`: a channel that fires when the next resync is due, and its cleanup.
    fn resync_chan(&self) -> (Chan<Instant>, Cleanup) {
        self.next_resync.set(time::now() + self.resync_period);
        let t = Timer::new(self.resync_period);
        let c = t.c().clone();
        (c, Arc::new(move || t.stop()))
    }

    /// `ListAndWatch`: lists, starts the resync goroutine, then watches until the watch ends.
    fn list_and_watch(self: &Arc<Self>, stop_ch: &Chan<()>) -> Result<(), Error> {
        let (resync_ch, cleanup) = self.resync_chan();
        // `defer cleanup()` takes the function value now: it stops the first timer only.
        let deferred_cleanup = cleanup.clone();
        let _cleanup = defer(move || {
            deferred_cleanup();
        });

        let resource_version = self.lister_watcher.list()?;
        self.sync_with()?;
        self.set_last_sync_resource_version(resource_version);

        let resyncerrc: Chan<Error> = Chan::new(1).named("resyncerrc");
        // The fix: a channel closed when ListAndWatch returns, for any reason.
        let cancel_ch: Chan<()> = if self.variant.fixed() {
            Chan::new(0).named("cancelCh")
        } else {
            Chan::nil()
        };
        let _close_cancel_ch = defer(|| {
            if self.variant.fixed() {
                cancel_ch.close();
            }
        });
        let r = self.clone();
        let (stop_ch2, resyncerrc2, cancel_ch2) =
            (stop_ch.clone(), resyncerrc.clone(), cancel_ch.clone());
        go_named("ListAndWatch.func1", move || {
            // The closure shares `resyncCh` and `cleanup` with ListAndWatch, which no longer
            // touches them once the goroutine runs.
            let (mut resync_ch, mut cleanup) = (resync_ch, cleanup);
            loop {
                // Before the fix there is no cancel case (`cancel_ch2` is nil: it never fires).
                select! {
                    recv(resync_ch) => {},
                    recv(stop_ch2) => return,
                    recv(cancel_ch2) => return,
                }
                // glog: "forcing resync"
                if let Err(err) = r.store.resync() {
                    resyncerrc2.send(err);
                    return;
                }
                cleanup();
                (resync_ch, cleanup) = r.resync_chan();
            }
        });

        loop {
            match self.lister_watcher.watch() {
                // The watch fails: ListAndWatch returns, the resync goroutine does not.
                Err(_) => return Ok(()),
                Ok(()) => self.watch_handler(&resyncerrc, stop_ch)?,
            }
        }
    }

    /// `syncWith`.
    fn sync_with(&self) -> Result<(), Error> {
        self.store.replace()
    }

    /// `watchHandler` (never reached here: the watch fails first).
    fn watch_handler(&self, errc: &Chan<Error>, stop_ch: &Chan<()>) -> Result<(), Error> {
        select! {
            recv(stop_ch) => Err(Error),
            recv(errc) -> err => Err(err.unwrap_or(Error)),
        }
    }

    /// `setLastSyncResourceVersion`.
    fn set_last_sync_resource_version(&self, v: String) {
        self.last_sync_resource_version_mutex.lock();
        let _unlock = defer(|| self.last_sync_resource_version_mutex.unlock());
        self.last_sync_resource_version.set(v);
    }
}

/// One pass of the reflector's `Run` loop: `ListAndWatch(wait.NeverStop)`.
fn test_kubernetes35672(variant: Variant) {
    let r = Arc::new(Reflector {
        store: FakeStore,
        lister_watcher: FakeListerWatcher,
        resync_period: Duration::from_secs(30),
        next_resync: Shared::new(Instant::default()).named("nextResync"),
        last_sync_resource_version: Shared::new(String::new()).named("lastSyncResourceVersion"),
        last_sync_resource_version_mutex: RwMutex::new().named("lastSyncResourceVersionMutex"),
        variant,
    });
    // `wait.NeverStop`: a channel nobody ever closes.
    let never_stop = Chan::new(0).named("NeverStop");
    if let Err(err) = r.list_and_watch(&never_stop) {
        let _ = err; // utilruntime.HandleError
    }
}
