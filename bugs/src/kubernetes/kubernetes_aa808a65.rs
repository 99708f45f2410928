#![doc = include_str!("kubernetes_aa808a65.md")]

use std::sync::Arc;

use primitives::sync::WaitGroup;
use primitives::{defer, go_named, Chan, GoMap};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "kubernetes_aa808a65",
        project: "kubernetes",
        upstream: "https://github.com/kubernetes/kubernetes/commit/aa808a650585daf17dcbcd13d4d68e7398d4dfd9",
        category: "Data race",
        expected: primitives::Verdict::Race,
        kernel: test_kubernetesaa808a65,
        walkthrough: include_str!("kubernetes_aa808a65.md"),
        asplos: Some("non-blocking-bugs/kubernetes/aa808a650585daf17dcbcd13d4d68e7398d4dfd9.txt"),
        source: Source::Diff("aa808a65"),
        fix: Fix::Upstream("aa808a65"),
        review: "faithful after mends: Checked against aa808a65 (= ASPLOS diff) and a stored 2014 kubelet.go just after the fix (corroborating the lines between hunks): the collector's last map write races SyncManifests' reads after Wait, as upstream; all fix hunks mapped; the mends (a source for the reconstruction, the kill loop now logging and going on, a Go-version source for the map check, the line range) are made.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `DockerID`.
type DockerId = String;

/// An error (`error`); its text does not matter here.
#[derive(Debug)]
struct Error;

/// `api.ContainerManifest`: here, the Docker IDs of the containers it runs.
struct ContainerManifest {
    container_ids: Vec<DockerId>,
}

/// `Kubelet`, the parts the bug goes through; its Docker client is a fake.
struct Kubelet {
    /// The containers the fake Docker daemon runs.
    existing_containers: Vec<DockerId>,
    variant: Variant,
}

impl Kubelet {
    /// `syncManifest`: makes sure the manifest's containers run, and reports every container
    /// it wants kept on `keepChannel`.
    fn sync_manifest(
        &self,
        manifest: &ContainerManifest,
        keep_channel: &Chan<DockerId>,
    ) -> Result<(), Error> {
        for id in &manifest.container_ids {
            keep_channel.send(id.clone());
        }
        Ok(())
    }

    /// `getDockerContainers`.
    fn get_docker_containers(&self) -> Result<Vec<DockerId>, Error> {
        Ok(self.existing_containers.clone())
    }

    /// `killContainer`.
    fn kill_container(&self, _id: &DockerId) -> Result<(), Error> {
        Ok(())
    }

    /// `SyncManifests`: syncs every manifest in its own goroutine, collects the IDs to keep,
    /// then kills every other container.
    fn sync_manifests(self: &Arc<Self>, config: Arc<Vec<ContainerManifest>>) -> Result<(), Error> {
        // glog.Infof("Desired: %+v", config)
        let mut err: Result<(), Error> = Ok(()); // var err error
        let docker_ids_to_keep: GoMap<DockerId, bool> = GoMap::new().named("dockerIdsToKeep");
        let keep_channel: Chan<DockerId> = Chan::new(0).named("keepChannel");
        let wait_group = WaitGroup::new().named("waitGroup");

        // Check for any containers that need starting.
        for ix in 0..config.len() {
            wait_group.add(1);
            let (kl, config, keep, wg) = (
                self.clone(),
                config.clone(),
                keep_channel.clone(),
                wait_group.clone(),
            );
            go_named("SyncManifests.func1", move || {
                let _done = defer(|| wg.done());
                if let Err(err) = kl.sync_manifest(&config[ix], &keep) {
                    let _ = err; // glog.Errorf("Error syncing manifest: ...")
                }
            });
        }
        // The fix: a channel the collector signals when it has stored every ID.
        let ch: Chan<bool> = if self.variant.fixed() {
            Chan::new(0).named("ch")
        } else {
            Chan::nil()
        };
        let (keep, ids, done, variant) = (
            keep_channel.clone(),
            docker_ids_to_keep.clone(),
            ch.clone(),
            self.variant,
        );
        go_named("SyncManifests.func2", move || {
            while let Some(id) = keep.recv() {
                ids.insert(id, true);
            }
            if variant.fixed() {
                done.send(true);
            }
        });
        if self.variant.fixed() {
            if !config.is_empty() {
                wait_group.wait();
            }
            keep_channel.close();
            ch.recv();
        } else if !config.is_empty() {
            wait_group.wait();
            keep_channel.close();
        }

        // Kill any containers we don't need.
        let existing_containers = self.get_docker_containers()?;
        for id in &existing_containers {
            if !docker_ids_to_keep.get(id).unwrap_or(false) {
                // glog.Infof("Killing: %s", id)
                err = self.kill_container(id);
                if let Err(e) = &err {
                    let _ = e; // glog.Errorf("Error killing container: %v", err)
                }
            }
        }
        err
    }
}

/// One call of `SyncManifests` with one manifest whose one container already runs, next to
/// one container that no manifest wants.
fn test_kubernetesaa808a65(variant: Variant) {
    let kl = Arc::new(Kubelet {
        existing_containers: vec!["1234".to_string(), "9876".to_string()],
        variant,
    });
    let config = Arc::new(vec![ContainerManifest {
        container_ids: vec!["1234".to_string()],
    }]);
    let _ = kl.sync_manifests(config);
}
