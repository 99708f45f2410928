#![doc = include_str!("moby_30696.md")]

use std::sync::Arc;
use std::time::Duration;

use primitives::sync::{Mutex, WaitGroup};
use primitives::{defer, go_named, time, GoMap, Shared};

use crate::{Budget, Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "moby_30696",
        project: "moby",
        upstream: "https://github.com/moby/moby/pull/30696",
        category: "Order violation (layer released while another operation still uses it)",
        expected: primitives::Verdict::Assert,
        kernel: test_commit_while_rm,
        walkthrough: include_str!("moby_30696.md"),
        goker: None,
        asplos: None,
        source: Source::Diff("8c32659979"),
        fix: Fix::Upstream("8c32659979"),
        review: "faithful after mends: Checked against 8c32659979 (PR #30696, merged a157dc53a8) and commit/delete/daemon.go, state.go, layer_store/mounted_layer.go, devmapper driver/deviceset.go, fsdiff.go at its parent, plus #29654 and #32290: right bug, interleaving and fix at every touched line; the devicemapper model is small, admitted and honest, and the assert is rm's real result against the invariant `Remove` states (driver.go:159); all mends are made (the goroutine renamed `deleteContainers`, the thread's wording quoted, three Deviations added with the deferred-deletion default corrected, the course's category noted); the trace block awaits re-blessing.",
        file: file!(),
        // Bound 2 keeps loom's searches small (the walkthrough gives the figures for bound 3).
        budget: Budget { preemption_bound: Some(2), ..Budget::DEFAULT },
        ..Bug::DEFAULT
    }
}

/// `devicemapper.ErrBusy`.
const ERR_BUSY: &str = "Device is Busy";

/// `removeDevice`'s retries (200 upstream).
const REMOVE_RETRIES: usize = 3;

/// `devmapper.DeviceSet`: the thin devices by hash. The value stands for the kernel's view of
/// the device: `true` while it is mounted (open), when removing it fails with EBUSY.
struct DeviceSet {
    /// The embedded `sync.Mutex` (`devices.Lock()`).
    lock: Mutex,
    devices: GoMap<&'static str, bool>,
}

impl DeviceSet {
    /// `MountDevice`.
    fn mount_device(&self, hash: &'static str) -> Result<(), String> {
        self.lock.lock();
        let _unlock = defer(|| self.lock.unlock());
        if !self.devices.contains_key(&hash) {
            return Err(format!("Unknown device {hash}"));
        }
        self.devices.insert(hash, true);
        Ok(())
    }

    /// `UnmountDevice`.
    fn unmount_device(&self, hash: &'static str) -> Result<(), String> {
        self.lock.lock();
        let _unlock = defer(|| self.lock.unlock());
        self.devices.insert(hash, false);
        Ok(())
    }

    /// `HasDevice`.
    fn has_device(&self, hash: &'static str) -> bool {
        self.lock.lock();
        let res = self.devices.contains_key(&hash);
        self.lock.unlock();
        res
    }

    /// `DeleteDevice` → `deleteDevice` → `deactivateDeviceMode` → `removeDevice`.
    fn delete_device(&self, hash: &'static str) -> Result<(), String> {
        self.lock.lock();
        let _unlock = defer(|| self.lock.unlock());
        // removeDevice: devicemapper.RemoveDevice fails with ErrBusy while the device is open.
        let mut err = Ok(());
        for _ in 0..REMOVE_RETRIES {
            err = if self.devices.get(&hash) == Some(true) {
                Err(ERR_BUSY.to_string())
            } else {
                Ok(())
            };
            if err.is_ok() {
                break;
            }
            self.lock.unlock();
            time::sleep(Duration::from_millis(100));
            self.lock.lock();
        }
        err?;
        // deleteTransaction
        self.devices.remove(&hash);
        Ok(())
    }
}

/// `devmapper.Driver` (its `locker`, per id upstream, and its mount `ctr`).
struct Driver {
    locker: Mutex,
    /// `d.ctr`'s count for the one mount point.
    ctr: Shared<i32>,
    device_set: DeviceSet,
}

impl Driver {
    /// `Get`: mounts the device on first use.
    fn get(&self, id: &'static str) -> Result<(), String> {
        self.locker.lock();
        let _unlock = defer(|| self.locker.unlock());
        self.ctr.set(self.ctr.get() + 1);
        if self.ctr.get() > 1 {
            return Ok(());
        }
        if let Err(err) = self.device_set.mount_device(id) {
            self.ctr.set(self.ctr.get() - 1);
            return Err(err);
        }
        Ok(())
    }

    /// `Put`: unmounts the device on last use.
    fn put(&self, id: &'static str) -> Result<(), String> {
        self.locker.lock();
        let _unlock = defer(|| self.locker.unlock());
        self.ctr.set(self.ctr.get() - 1);
        if self.ctr.get() > 0 {
            return Ok(());
        }
        self.device_set.unmount_device(id)
    }

    /// `Remove`.
    fn remove(&self, id: &'static str) -> Result<(), String> {
        self.locker.lock();
        let _unlock = defer(|| self.locker.unlock());
        if !self.device_set.has_device(id) {
            return Ok(());
        }
        self.device_set
            .delete_device(id)
            .map_err(|err| format!("failed to remove device {id}: {err}"))
    }

    /// `Diff` (`graphdriver.NaiveDiffDriver`): the archive keeps the layer mounted until it
    /// is closed.
    fn diff(self: &Arc<Self>, id: &'static str) -> Result<Archive, String> {
        self.get(id)?;
        Ok(Archive {
            driver: self.clone(),
            id,
        })
    }
}

/// The tar stream `Diff` returns; `Close` puts the layer.
struct Archive {
    driver: Arc<Driver>,
    id: &'static str,
}

impl Archive {
    fn close(&self) -> Result<(), String> {
        self.driver.put(self.id)
    }
}

/// `layer.mountedLayer`.
struct MountedLayer {
    name: &'static str,
    mount_id: &'static str,
    /// `references map[RWLayer]*referencedRWLayer`, keyed by the reference's identity.
    references: GoMap<u64, ()>,
    driver: Arc<Driver>,
}

/// `layer.referencedRWLayer`: one reference to a mounted layer (an `RWLayer`).
struct ReferencedRwLayer {
    /// Stands for the pointer the references map is keyed by.
    ptr: Shared<()>,
    mounted_layer: Arc<MountedLayer>,
}

impl MountedLayer {
    /// `getReference`.
    fn get_reference(self: &Arc<Self>) -> Arc<ReferencedRwLayer> {
        let r = Arc::new(ReferencedRwLayer {
            ptr: Shared::new(()).named("referencedRWLayer"),
            mounted_layer: self.clone(),
        });
        self.references.insert(r.ptr.identity(), ());
        r
    }

    /// `hasReferences`.
    fn has_references(&self) -> bool {
        !self.references.is_empty()
    }

    /// `deleteReference`.
    fn delete_reference(&self, r: &ReferencedRwLayer) -> Result<(), String> {
        if self.references.remove(&r.ptr.identity()).is_none() {
            return Err("layer not retained".to_string());
        }
        Ok(())
    }

    /// `retakeReference`.
    fn retake_reference(&self, r: &ReferencedRwLayer) {
        self.references.insert(r.ptr.identity(), ());
    }
}

impl ReferencedRwLayer {
    fn name(&self) -> &'static str {
        self.mounted_layer.name
    }

    /// `Mount`.
    fn mount(&self) -> Result<(), String> {
        self.mounted_layer.driver.get(self.mounted_layer.mount_id)
    }

    /// `Unmount`.
    fn unmount(&self) -> Result<(), String> {
        self.mounted_layer.driver.put(self.mounted_layer.mount_id)
    }

    /// `TarStream` (of `mountedLayer`).
    fn tar_stream(&self) -> Result<Archive, String> {
        self.mounted_layer.driver.diff(self.mounted_layer.mount_id)
    }
}

/// `layer.layerStore` (its mounts).
struct LayerStore {
    mount_l: Mutex,
    mounts: GoMap<&'static str, Arc<MountedLayer>>,
    driver: Arc<Driver>,
}

impl LayerStore {
    /// `GetRWLayer`.
    fn get_rw_layer(&self, id: &'static str) -> Result<Arc<ReferencedRwLayer>, String> {
        self.mount_l.lock();
        let _unlock = defer(|| self.mount_l.unlock());
        let Some(mount) = self.mounts.get(&id) else {
            return Err("mount does not exist".to_string()); // ErrMountDoesNotExist
        };
        Ok(mount.get_reference())
    }

    /// `ReleaseRWLayer`.
    fn release_rw_layer(&self, l: &ReferencedRwLayer) -> Result<(), String> {
        self.mount_l.lock();
        let _unlock = defer(|| self.mount_l.unlock());
        let Some(m) = self.mounts.get(&l.name()) else {
            return Ok(());
        };
        m.delete_reference(l)?;
        if m.has_references() {
            return Ok(());
        }
        if let Err(err) = self.driver.remove(m.mount_id) {
            // logrus.Errorf("Error removing mounted layer ...")
            m.retake_reference(l);
            return Err(err);
        }
        // the init layer, the mount's metadata and the parent layer are released here
        self.mounts.remove(&m.name);
        Ok(())
    }
}

/// `container.Container`: its `State` (lock, `Dead`, `RemovalInProgress`) and `RWLayer`.
struct Container {
    /// `State`'s embedded `sync.Mutex`.
    mu: Mutex,
    id: &'static str,
    dead: Shared<bool>,
    removal_in_progress: Shared<bool>,
    /// `RWLayer`: the container's own reference, taken when it was created.
    rw_layer: Arc<ReferencedRwLayer>,
}

impl Container {
    /// `SetRemovalInProgress`: sets the flag, reports whether it was set already.
    fn set_removal_in_progress(&self) -> bool {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        if self.removal_in_progress.get() {
            return true;
        }
        self.removal_in_progress.set(true);
        false
    }

    /// `ResetRemovalInProgress`.
    fn reset_removal_in_progress(&self) {
        self.mu.lock();
        self.removal_in_progress.set(false);
        self.mu.unlock();
    }

    /// `IsRemovalInProgress` (added by the fix).
    fn is_removal_in_progress(&self) -> bool {
        self.mu.lock();
        let res = self.removal_in_progress.get();
        self.mu.unlock();
        res
    }

    /// `IsDead` (added by the fix).
    fn is_dead(&self) -> bool {
        self.mu.lock();
        let res = self.dead.get();
        self.mu.unlock();
        res
    }
}

/// `ioutils.NewReadCloserWrapper`: the archive and the function its `Close` runs.
struct ReadCloserWrapper {
    closer: Box<dyn FnOnce() -> Result<(), String> + Send>,
}

impl ReadCloserWrapper {
    fn close(self) -> Result<(), String> {
        (self.closer)()
    }
}

/// `daemon.Daemon` (its layer store; one platform).
struct Daemon {
    layer_store: Arc<LayerStore>,
    variant: Variant,
}

impl Daemon {
    /// `Commit`, up to the image's registration.
    fn commit(&self, container: &Arc<Container>) -> Result<String, String> {
        if self.variant.fixed() {
            if container.is_dead() {
                return Err(format!(
                    "You cannot commit container {} which is Dead",
                    container.id
                ));
            }
            if container.is_removal_in_progress() {
                return Err(format!(
                    "You cannot commit container {} which is being removed",
                    container.id
                ));
            }
        }
        let rw_tar = self.export_container_rw(container)?;
        // parent image; layerStore.Register(rwTar, ...) reads the whole stream from the
        // mounted layer; imageStore.Create; tags; events
        let _ = rw_tar.close(); // defer rwTar.Close()
        Ok("sha256:new image".to_string())
    }

    /// `exportContainerRw`.
    fn export_container_rw(&self, container: &Arc<Container>) -> Result<ReadCloserWrapper, String> {
        let variant = self.variant;
        let rwlayer = if variant.fixed() {
            self.layer_store.get_rw_layer(container.id)?
        } else {
            container.rw_layer.clone()
        };
        let ls = self.layer_store.clone();
        let release_on_err = |rwlayer: &ReferencedRwLayer| {
            if variant.fixed() {
                let _ = ls.release_rw_layer(rwlayer);
            }
        };
        // daemon.Mount(container) / rwlayer.Mount(container.GetMountLabel())
        if let Err(err) = rwlayer.mount() {
            release_on_err(&rwlayer);
            return Err(err);
        }
        let archive = match rwlayer.tar_stream() {
            Ok(archive) => archive,
            Err(err) => {
                let _ = rwlayer.unmount();
                release_on_err(&rwlayer);
                return Err(err);
            }
        };
        let ls = self.layer_store.clone();
        Ok(ReadCloserWrapper {
            closer: Box::new(move || {
                let _ = archive.close();
                let err = rwlayer.unmount();
                if variant.fixed() {
                    let _ = ls.release_rw_layer(&rwlayer);
                }
                err
            }),
        })
    }

    /// `ContainerRm`.
    fn container_rm(&self, container: &Arc<Container>) -> Result<(), String> {
        if container.set_removal_in_progress() {
            return Err(format!(
                "removal of container {} is already in progress",
                container.id
            ));
        }
        let _reset = defer(|| container.reset_removal_in_progress());
        self.cleanup_container(container)
    }

    /// `cleanupContainer` (for a stopped container).
    fn cleanup_container(&self, container: &Arc<Container>) -> Result<(), String> {
        // stop stats collection; containerStop (the container is not running)
        container.mu.lock();
        container.dead.set(true);
        // CheckpointTo(daemon.containersReplica)
        container.mu.unlock();

        if let Err(err) = self.layer_store.release_rw_layer(&container.rw_layer) {
            return Err(format!(
                "driver \"devicemapper\" failed to remove root filesystem for {}: {err}",
                container.id
            ));
        }
        // remove container.Root, the indexes, the store entries, the mount points;
        // SetRemoved; the "destroy" event
        Ok(())
    }
}

/// A daemon on devicemapper with one stopped container. Then, at once, as in the issue's
/// reproduction: `docker commit` of the container and `docker rm` of it.
fn test_commit_while_rm(variant: Variant) {
    let driver = Arc::new(Driver {
        locker: Mutex::new().named("Driver.locker"),
        ctr: Shared::new(0).named("Driver.ctr"),
        device_set: DeviceSet {
            lock: Mutex::new().named("DeviceSet.Mutex"),
            devices: GoMap::new().named("DeviceSet.Devices"),
        },
    });
    driver.device_set.devices.insert("c1-mount", false);
    let layer_store = Arc::new(LayerStore {
        mount_l: Mutex::new().named("layerStore.mountL"),
        mounts: GoMap::new().named("layerStore.mounts"),
        driver: driver.clone(),
    });
    // CreateRWLayer: the mount and the container's reference to it.
    let ml = Arc::new(MountedLayer {
        name: "c1",
        mount_id: "c1-mount",
        references: GoMap::new().named("mountedLayer.references"),
        driver,
    });
    layer_store.mounts.insert("c1", ml.clone());
    let container = Arc::new(Container {
        mu: Mutex::new().named("State.Mutex"),
        id: "c1",
        dead: Shared::new(false).named("State.Dead"),
        removal_in_progress: Shared::new(false).named("State.RemovalInProgress"),
        rw_layer: ml.get_reference(),
    });
    let daemon = Arc::new(Daemon {
        layer_store,
        variant,
    });

    let rm_err: Arc<Shared<Option<String>>> = Arc::new(Shared::new(None).named("rm's error"));
    let wg = WaitGroup::new().named("wg");
    wg.add(2);

    // The API server's goroutine for POST /commit.
    let (d, c, wg2) = (daemon.clone(), container.clone(), wg.clone());
    go_named("postCommit", move || {
        let _ = d.commit(&c);
        wg2.done();
    });

    // The API server's goroutine for DELETE /containers/c1.
    let (d, c, wg2, res) = (daemon, container, wg.clone(), rm_err.clone());
    go_named("deleteContainers", move || {
        res.set(d.container_rm(&c).err());
        wg2.done();
    });

    wg.wait();
    // The report: `docker rm` of the stopped container fails.
    if let Some(err) = rm_err.get() {
        panic!("assertion failed: docker rm c1: Error response from daemon: {err}");
    }
}
