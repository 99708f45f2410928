#![doc = include_str!("moby_16309.md")]

use std::sync::Arc;

use primitives::sync::{Mutex, WaitGroup};
use primitives::{defer, go_named, GoMap, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "moby_16309",
        project: "moby",
        upstream: "https://github.com/moby/moby/pull/16309",
        category: "Data race (map read without the lock its writers hold)",
        expected: primitives::Verdict::Race,
        kernel: test_moby16309,
        walkthrough: include_str!("moby_16309.md"),
        asplos: Some("non-blocking-bugs/docker/2d21996eec8d3e6100f19fa0d0fa7adad25285ca.txt"),
        source: Source::Diff("2d21996e"),
        fix: Fix::Upstream("2d21996e"),
        review: "faithful: Checked against moby 2d21996e (PR #16309) and daemon/volumes.go, volumes_unix.go, list.go, create.go, daemon.go, api/server/volume.go at its parent: the same unlocked map/counter reads against locked writes, both fix hunks are the variant switch, reductions admitted; faithful.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// An error (`error`); its text does not matter here.
#[derive(Debug)]
struct Error;

/// `volume.Volume` of the `local` driver: its name is all that matters here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Volume {
    name: &'static str,
}

impl Volume {
    /// `Name`.
    fn name(&self) -> &'static str {
        self.name
    }
}

/// The `local` volume driver (`volume.Driver`).
struct LocalDriver;

impl LocalDriver {
    /// `Create`: makes the volume's directory.
    fn create(&self, name: &'static str) -> Result<Volume, Error> {
        Ok(Volume { name })
    }
}

/// `volumeCounter`: a volume and the number of containers using it.
struct VolumeCounter {
    volume: Volume,
    count: Shared<i32>,
}

impl VolumeCounter {
    fn new(volume: Volume, count: i32) -> Arc<Self> {
        Arc::new(VolumeCounter {
            volume,
            count: Shared::new(count).named("volumeCounter.count"),
        })
    }
}

/// `volumeStore`.
struct VolumeStore {
    vols: GoMap<&'static str, Arc<VolumeCounter>>,
    mu: Mutex,
    variant: Variant,
}

impl VolumeStore {
    /// `Create`: the existing volume of that name, or a new one from the driver.
    fn create(&self, name: &'static str) -> Result<Volume, Error> {
        self.mu.lock();
        if let Some(vc) = self.vols.get(&name) {
            let v = vc.volume;
            self.mu.unlock();
            return Ok(v);
        }
        self.mu.unlock();
        // "Registering new volume reference"
        let v = LocalDriver.create(name)?;

        self.mu.lock();
        self.vols.insert(v.name(), VolumeCounter::new(v, 0));
        self.mu.unlock();
        Ok(v)
    }

    /// `Increment`: one more container uses `v`.
    fn increment(&self, v: Volume) {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        match self.vols.get(&v.name()) {
            None => {
                self.vols.insert(v.name(), VolumeCounter::new(v, 1));
            }
            Some(vc) => vc.count.set(vc.count.get() + 1),
        }
    }

    /// `Count`: how many containers use `v`.
    fn count(&self, v: Volume) -> i32 {
        let _unlock = if self.variant.fixed() {
            self.mu.lock();
            Some(defer(|| self.mu.unlock()))
        } else {
            None
        };
        match self.vols.get(&v.name()) {
            None => 0,
            Some(vc) => vc.count.get(),
        }
    }

    /// `List`: every volume in the store.
    fn list(&self) -> Vec<Volume> {
        let _unlock = if self.variant.fixed() {
            self.mu.lock();
            Some(defer(|| self.mu.unlock()))
        } else {
            None
        };
        // for _, vc := range s.vols
        self.vols
            .with(|vols| vols.values().map(|vc| vc.volume).collect())
    }
}

/// `Daemon`: its volume store.
struct Daemon {
    volumes: VolumeStore,
}

impl Daemon {
    /// `createVolume`: creates (or finds) the volume and counts one more user.
    fn create_volume(&self, name: &'static str) -> Result<Volume, Error> {
        let v = self.volumes.create(name)?;
        self.volumes.increment(v);
        Ok(v)
    }

    /// `Volumes`: lists the volumes; with the `dangling` filter, only those no container uses.
    fn volumes(&self, dangling: bool) -> Vec<Volume> {
        let filter_used = dangling;
        let mut volumes_out = Vec::new();
        for v in self.volumes.list() {
            if filter_used && self.volumes.count(v) > 0 {
                continue;
            }
            volumes_out.push(v);
        }
        volumes_out
    }
}

/// Two API requests at once: `docker run -v data:/data ...` creates the volume `data` while
/// `docker volume ls -f dangling=true` lists the volumes no container uses.
fn test_moby16309(variant: Variant) {
    let daemon = Arc::new(Daemon {
        volumes: VolumeStore {
            vols: GoMap::new().named("volumeStore.vols"),
            mu: Mutex::new().named("volumeStore.mu"),
            variant,
        },
    });
    // A volume made earlier by `docker volume create --name logs` (`VolumeCreate`), which no
    // container uses.
    daemon.volumes.create("logs").expect("create");

    let wg = WaitGroup::new();
    wg.add(2);
    let (d, wg2) = (daemon.clone(), wg.clone());
    go_named("postContainersCreate", move || {
        let _done = defer(|| wg2.done());
        d.create_volume("data").expect("create");
    });
    let (d, wg2) = (daemon.clone(), wg.clone());
    go_named("getVolumesList", move || {
        let _done = defer(|| wg2.done());
        let _ = d.volumes(true);
    });
    wg.wait();
}
