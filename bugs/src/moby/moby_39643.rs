#![doc = include_str!("moby_39643.md")]

use std::collections::BTreeMap;
use std::ops::Deref;
use std::sync::Arc;

use primitives::sync::RwMutex;
use primitives::{defer, go_named, GoMap, Shared};

use crate::{Budget, Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "moby_39643",
        project: "moby",
        upstream: "https://github.com/moby/moby/pull/39644",
        category: "Data race (map written without its lock)",
        expected: primitives::Verdict::Panic,
        kernel: test_moby39643,
        budget: Budget { race_detector: false, ..Budget::DEFAULT },
        walkthrough: include_str!("moby_39643.md"),
        source: Source::Diff("1ac0a66a"),
        fix: Fix::Upstream("1ac0a66a"),
        review: "faithful after mends: Checked against issue #39643, PR #39644 (commit 1ac0a66a, merge 41040b79) and its backports, projectquota.go/types.go, overlay2/overlay.go, layer/layer_store.go, images/service.go at 1ac0a66a^, and 05250a4f (#39135): the unlocked read/insert of Control.quotas (and nextProjectID++) by two parallel container creates, fixed with the RWMutex as upstream; the one false sentence (CreateRWLayer holding no lock) is mended: it now names the per-name lock that does not order two containers.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// The driver's home, and the project id `xfs_quota` gave it.
const HOME: &str = "/var/lib/docker/overlay2";
const HOME_PROJECT_ID: u32 = 999;

/// `quota.Quota`: the blocks hard limit, in bytes.
#[derive(Clone, Copy)]
struct Quota {
    size: u64,
}

/// The XFS file system, as far as project ids go: the project id of each directory there
/// was when the daemon started. Its ioctls are system calls, not Go memory: nothing here is
/// checked for races.
struct Xfs {
    project_ids: BTreeMap<&'static str, u32>,
}

impl Xfs {
    /// `getProjectID`: the `FS_IOC_FSGETXATTR` ioctl.
    fn get_project_id(&self, target_path: &'static str) -> Result<u32, String> {
        Ok(self.project_ids.get(target_path).copied().unwrap_or(0))
    }

    /// `setProjectID`: the `FS_IOC_FSSETXATTR` ioctl.
    fn set_project_id(&self, _target_path: &'static str, _project_id: u32) -> Result<(), String> {
        Ok(())
    }

    /// `setProjectQuota`: the `Q_XSETPQLIM` quotactl (the kernel keeps no limits).
    fn set_project_quota(&self, _project_id: u32, _quota: Quota) -> Result<(), String> {
        Ok(())
    }

    /// `ioutil.ReadDir(home)`: the directories already under the driver's home.
    fn read_dir(&self, home: &'static str) -> Vec<&'static str> {
        self.project_ids
            .keys()
            .copied()
            .filter(|p| *p != home)
            .collect()
    }
}

/// `quota.Control`; the fix embeds a `sync.RWMutex` guarding `nextProjectID` and `quotas`.
struct Control {
    rw_mutex: RwMutex,
    next_project_id: Shared<u32>,
    quotas: GoMap<&'static str, u32>,
    fs: Arc<Xfs>,
    variant: Variant,
}

impl Deref for Control {
    type Target = RwMutex;
    fn deref(&self) -> &RwMutex {
        &self.rw_mutex
    }
}

/// `NewControl`: the first free project id after the home's, and the ids already in use.
fn new_control(base_path: &'static str, fs: Arc<Xfs>, variant: Variant) -> Result<Control, String> {
    let mut min_project_id = fs.get_project_id(base_path)?;
    min_project_id += 1;
    fs.set_project_quota(min_project_id, Quota { size: 0 })?;

    let q = Control {
        rw_mutex: RwMutex::new().named("quota.Control"),
        next_project_id: Shared::new(min_project_id + 1).named("nextProjectID"),
        quotas: GoMap::new().named("quotas"),
        fs,
        variant,
    };

    q.find_next_project_id(base_path)?;
    Ok(q)
}

impl Control {
    /// `SetQuota`: gives the directory a project id of its own (the first time) and sets the
    /// limit on it.
    fn set_quota(&self, target_path: &'static str, quota: Quota) -> Result<(), String> {
        let (mut project_id, ok) = if self.variant.fixed() {
            self.rlock();
            let r = self.quotas.get(&target_path);
            self.runlock();
            (r.unwrap_or(0), r.is_some())
        } else {
            let r = self.quotas.get(&target_path);
            (r.unwrap_or(0), r.is_some())
        };
        if !ok {
            if self.variant.fixed() {
                self.lock();
            }
            project_id = self.next_project_id.get();

            // assign project id to new container directory
            if let Err(err) = self.fs.set_project_id(target_path, project_id) {
                if self.variant.fixed() {
                    self.unlock();
                }
                return Err(err);
            }
            self.quotas.insert(target_path, project_id);
            self.next_project_id.set(self.next_project_id.get() + 1);
            if self.variant.fixed() {
                self.unlock();
            }
        }

        // set the quota limit for the container's project id
        self.fs.set_project_quota(project_id, quota)
    }

    /// `findNextProjectID`: records the project ids of the directories under `home`.
    fn find_next_project_id(&self, home: &'static str) -> Result<(), String> {
        let _unlock = if self.variant.fixed() {
            self.lock();
            Some(defer(|| self.unlock()))
        } else {
            None
        };
        for path in self.fs.read_dir(home) {
            let projid = self.fs.get_project_id(path)?;
            if projid > 0 {
                self.quotas.insert(path, projid);
            }
            if self.next_project_id.get() <= projid {
                self.next_project_id.set(projid + 1);
            }
        }
        Ok(())
    }
}

/// The overlay2 `Driver`, with the daemon-wide `overlay2.size` option.
struct Driver {
    quota_ctl: Control,
    quota: Quota,
}

impl Driver {
    /// `CreateReadWrite`: the container's read-write layer gets the default size.
    fn create_read_write(&self, id: &'static str) -> Result<(), String> {
        self.create(id)
    }

    /// `create`: makes the layer's directory and sets its quota.
    fn create(&self, id: &'static str) -> Result<(), String> {
        let dir = id; // d.dir(id); MkdirAndChown
        if self.quota.size > 0 {
            // Set container disk quota limit
            self.quota_ctl.set_quota(dir, self.quota)?;
        }
        Ok(())
    }
}

/// Two `docker run` at once on a daemon whose overlay2 driver sets a default size: each
/// request creates its container's read-write layer on the API goroutine serving it.
fn test_moby39643(variant: Variant) {
    let fs = Arc::new(Xfs {
        project_ids: BTreeMap::from([
            (HOME, HOME_PROJECT_ID),
            // A container's layer left from before the daemon started.
            ("/var/lib/docker/overlay2/old", HOME_PROJECT_ID + 2),
        ]),
    });
    let quota_ctl = new_control(HOME, fs, variant).expect("project quota is supported");
    let d = Arc::new(Driver {
        quota_ctl,
        quota: Quota { size: 1 << 30 },
    });

    let d1 = d.clone();
    go_named("containerCreate", move || {
        let _ = d1.create_read_write("/var/lib/docker/overlay2/web");
    });
    go_named("containerCreate", move || {
        let _ = d.create_read_write("/var/lib/docker/overlay2/db");
    });
}
