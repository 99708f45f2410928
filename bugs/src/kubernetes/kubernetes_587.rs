#![doc = include_str!("kubernetes_587.md")]

use std::collections::BTreeSet;
use std::sync::Arc;

use primitives::sync::Mutex;
use primitives::{defer, go_named, Defer, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "kubernetes_587",
        project: "kubernetes",
        upstream: "https://github.com/kubernetes/kubernetes/pull/587",
        category: "Data race",
        expected: primitives::Verdict::Race,
        kernel: test_kubernetes587,
        walkthrough: include_str!("kubernetes_587.md"),
        goker: None,
        asplos: Some("non-blocking-bugs/kubernetes/1f78b0fc6fe497dc2bcee755cc28369756ac41d0.txt"),
        source: Source::Diff("1f78b0fc"),
        fix: Fix::Upstream("1f78b0fc"),
        review: "faithful after mends: Checked against the 1f78b0fc diff (system-pclub), PR #587's title and a 2014 kubelet.go in the search index (podWorkers.Run, SyncPods, createNetworkContainer, NewIntegrationTestKubelet with FakeDockerPuller): the unlocked appends of two pod workers to the shared fakes and the fix's per-method lock are faithful; the two prose mends are made (SyncPods' dropped second ListContainers is named in Deviations; the goroutine pair is said to be a reading, with no race report).",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// The image of every pod's network container (`networkContainerImage`).
const NETWORK_CONTAINER_IMAGE: &str = "kubernetes/pause:latest";

/// An error the fakes may be told to return (`error`); never set here.
#[derive(Clone, Debug)]
struct Error;

/// `docker.APIContainers`, reduced to its names.
#[derive(Clone, Debug)]
struct ApiContainers {
    #[allow(dead_code)]
    names: Vec<String>,
}

/// `docker.Container`, reduced to its ID.
struct Container {
    id: String,
}

/// The fix's `f.lock.Lock(); defer f.lock.Unlock()`, which it puts at the top of every method
/// of both fakes; the code before the fix takes no lock.
fn lock_if_fixed(lock: &Mutex, variant: Variant) -> Option<Defer<impl FnOnce() + '_>> {
    variant.fixed().then(|| {
        lock.lock();
        defer(move || lock.unlock())
    })
}

/// `kubelet.FakeDockerClient`: a test spy that records every call.
struct FakeDockerClient {
    /// Added by the fix.
    lock: Mutex,
    container_list: Shared<Vec<ApiContainers>>,
    err: Option<Error>,
    called: Shared<Vec<String>>,
    created: Shared<Vec<String>>,
    variant: Variant,
}

impl FakeDockerClient {
    /// `ListContainers`.
    fn list_containers(&self) -> Result<Vec<ApiContainers>, Error> {
        let _unlock = lock_if_fixed(&self.lock, self.variant);
        // `f.called = append(f.called, "list")`: read the slice, write it back.
        let mut called = self.called.get();
        called.push("list".to_string());
        self.called.set(called);
        match &self.err {
            Some(err) => Err(err.clone()),
            None => Ok(self.container_list.get()),
        }
    }

    /// `CreateContainer`: records the call and the name, and adds the container to the list.
    fn create_container(&self, name: &str) -> Result<Container, Error> {
        let _unlock = lock_if_fixed(&self.lock, self.variant);
        let mut called = self.called.get();
        called.push("create".to_string());
        self.called.set(called);
        let mut created = self.created.get();
        created.push(name.to_string());
        self.created.set(created);
        // Not a good fake: the new container only joins the list, under Docker's "/" name.
        let mut list = self.container_list.get();
        list.push(ApiContainers {
            names: vec![format!("/{name}")],
        });
        self.container_list.set(list);
        match &self.err {
            Some(err) => Err(err.clone()),
            None => Ok(Container {
                id: name.to_string(),
            }),
        }
    }

    /// `StartContainer`.
    fn start_container(&self, _id: &str) -> Result<(), Error> {
        let _unlock = lock_if_fixed(&self.lock, self.variant);
        let mut called = self.called.get();
        called.push("start".to_string());
        self.called.set(called);
        self.err.clone().map_or(Ok(()), Err)
    }
}

/// `kubelet.FakeDockerPuller`: records every image pulled.
struct FakeDockerPuller {
    /// Added by the fix.
    lock: Mutex,
    images_pulled: Shared<Vec<String>>,
    errors_to_inject: Shared<Vec<Error>>,
    variant: Variant,
}

impl FakeDockerPuller {
    /// `Pull`: records the attempt and returns the first injected error, if any (none here).
    fn pull(&self, image: &str) -> Result<(), Error> {
        let _unlock = lock_if_fixed(&self.lock, self.variant);
        let mut pulled = self.images_pulled.get();
        pulled.push(image.to_string());
        self.images_pulled.set(pulled);
        let errors = self.errors_to_inject.get();
        match errors.first() {
            Some(err) => Err(err.clone()),
            None => Ok(()),
        }
    }
}

/// `kubelet.podWorkers`: at most one worker goroutine per pod.
struct PodWorkers {
    lock: Mutex,
    workers: Shared<BTreeSet<String>>,
}

impl PodWorkers {
    /// `podWorkers.Run`: starts `action` on its own goroutine unless the pod has a worker.
    fn run(self: &Arc<Self>, pod_full_name: String, action: impl FnOnce() + Send + 'static) {
        self.lock.lock();
        let _unlock = defer(|| self.lock.unlock());
        if self.workers.read(|w| w.contains(&pod_full_name)) {
            return;
        }
        self.workers.write(|w| w.insert(pod_full_name.clone()));
        let pw = self.clone();
        go_named("podWorkers.Run.func1", move || {
            action();
            pw.lock.lock();
            let _unlock = defer(|| pw.lock.unlock());
            pw.workers.write(|w| w.remove(&pod_full_name));
        });
    }
}

/// `kubelet.Kubelet`, reduced to the docker fakes and the pod workers.
struct Kubelet {
    docker_client: Arc<FakeDockerClient>,
    docker_puller: Arc<FakeDockerPuller>,
    pod_workers: Arc<PodWorkers>,
}

impl Kubelet {
    /// `SyncPods`: lists the containers, then syncs every pod on its own worker.
    fn sync_pods(self: &Arc<Self>, pods: &[&str]) -> Result<(), Error> {
        let docker_containers = self.docker_client.list_containers()?;
        for pod in pods {
            let pod_full_name = format!("{pod}.etcd");
            let (kl, name, dc) = (
                self.clone(),
                pod_full_name.clone(),
                docker_containers.clone(),
            );
            self.pod_workers.run(pod_full_name, move || {
                if let Err(_err) = kl.sync_pod(&name, &dc) {
                    // glog: "Error syncing pod"
                }
            });
        }
        Ok(())
    }

    /// `syncPod`: no network container is running for the pod, so it starts one.
    fn sync_pod(
        &self,
        pod_full_name: &str,
        _docker_containers: &[ApiContainers],
    ) -> Result<(), Error> {
        // glog: "Network container doesn't exist, creating"
        let _net_id = self.create_network_container(pod_full_name)?;
        Ok(())
    }

    /// `createNetworkContainer`: pulls the pause image and runs the network container.
    fn create_network_container(&self, pod_full_name: &str) -> Result<String, Error> {
        let _ = self.docker_puller.pull(NETWORK_CONTAINER_IMAGE);
        self.run_container(&format!("k8s--net--{pod_full_name}"))
    }

    /// `runContainer`: creates and starts a container.
    fn run_container(&self, name: &str) -> Result<String, Error> {
        let container = self.docker_client.create_container(name)?;
        self.docker_client.start_container(&container.id)?;
        Ok(container.id)
    }
}

/// The integration test's kubelet: one `SyncPods` with two new pods, on the fakes.
fn test_kubernetes587(variant: Variant) {
    let kl = Arc::new(Kubelet {
        docker_client: Arc::new(FakeDockerClient {
            lock: Mutex::new().named("FakeDockerClient.lock"),
            container_list: Shared::new(Vec::new()).named("containerList"),
            err: None,
            called: Shared::new(Vec::new()).named("called"),
            created: Shared::new(Vec::new()).named("Created"),
            variant,
        }),
        docker_puller: Arc::new(FakeDockerPuller {
            lock: Mutex::new().named("FakeDockerPuller.lock"),
            images_pulled: Shared::new(Vec::new()).named("ImagesPulled"),
            errors_to_inject: Shared::new(Vec::new()).named("ErrorsToInject"),
            variant,
        }),
        pod_workers: Arc::new(PodWorkers {
            lock: Mutex::new().named("podWorkers.lock"),
            workers: Shared::new(BTreeSet::new()).named("workers"),
        }),
    });
    if let Err(_err) = kl.sync_pods(&["foo", "bar"]) {
        // glog: "Couldn't sync containers"
    }
}
