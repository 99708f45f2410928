#![doc = include_str!("kubernetes_796.md")]

use std::collections::BTreeSet;
use std::sync::Arc;

use primitives::explore::Engine;
use primitives::sync::Mutex;
use primitives::{defer, go_named, Chan, GoMap, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "kubernetes_796",
        project: "kubernetes",
        upstream: "https://github.com/kubernetes/kubernetes/pull/796",
        category: "Data race (map)",
        expected: primitives::Verdict::Race,
        kernel: test_kubernetes796,
        walkthrough: include_str!("kubernetes_796.md"),
        goker: None,
        asplos: Some("non-blocking-bugs/kubernetes/2e02967acae23126402560a246bafc16d364a52d.txt"),
        source: Source::Diff("2e02967a"),
        fix: Fix::Upstream("2e02967a"),
        review: "faithful: Checked against the 2e02967a diff (system-pclub) and a pre-fix pkg/proxy/proxier.go in the search index (value-receiver OnUpdate): the copy sharing serviceMap with a separate mutex, the map write under the copy's lock against AcceptHandler's read under Proxier.mu, and the pointer-receiver fix are faithful; the unlocked mutex copy and the kernel's own test are admitted.",
        not_found_by: &[(
            Engine::Loom,
            "loom's search at preemption bound 3 finds the race only at execution 59,972 (harness \
             run, budget 150,000), past its budget of 20,000: a woken goroutine's first steps are \
             loom steps of their own, which multiplies the orders to run",
        )],
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// An error (`error`); its text does not matter here.
#[derive(Debug)]
struct Error;

/// A `net.Listener`: `Accept` waits for a connection (none comes here) and fails once the
/// listener is closed.
#[derive(Clone)]
struct Listener {
    conns: Chan<()>,
}

impl Listener {
    /// `net.Listen`.
    fn listen(name: &str) -> Listener {
        Listener {
            conns: Chan::new(0).named(name),
        }
    }

    /// `Accept`.
    fn accept(&self) -> Result<(), Error> {
        self.conns.recv().ok_or(Error)
    }

    /// `Close`.
    fn close(&self) {
        self.conns.close();
    }
}

/// `proxy.serviceInfo`.
struct ServiceInfo {
    name: Shared<String>,
    port: u16,
    listener: Listener,
    /// Protects `active`.
    mu: Mutex,
    active: Shared<bool>,
}

fn service_info(port: u16, listener: Listener) -> Arc<ServiceInfo> {
    Arc::new(ServiceInfo {
        name: Shared::new(String::new()).named("serviceInfo.name"),
        port,
        listener,
        mu: Mutex::new().named("serviceInfo.mu"),
        active: Shared::new(true).named("serviceInfo.active"),
    })
}

/// `api.Service`, reduced to its ID and port.
struct Service {
    id: &'static str,
    port: u16,
}

/// `proxy.Proxier`: `mu` protects `serviceMap`. A Go map is a reference: a copy of the struct
/// shares the map but not the mutex.
struct Proxier {
    mu: Mutex,
    service_map: GoMap<String, Arc<ServiceInfo>>,
    variant: Variant,
}

impl Proxier {
    /// `StopProxy`.
    fn stop_proxy(&self, service: &str) -> Result<(), Error> {
        let Some(info) = self.get_service_info(service) else {
            return Err(Error);
        };
        self.stop_proxy_internal(&info)
    }

    /// `stopProxyInternal`.
    fn stop_proxy_internal(&self, info: &ServiceInfo) -> Result<(), Error> {
        info.mu.lock();
        let _unlock = defer(|| info.mu.unlock());
        if !info.active.get() {
            return Ok(());
        }
        // glog: "Removing service"
        info.active.set(false);
        info.listener.close();
        Ok(())
    }

    /// `getServiceInfo`.
    fn get_service_info(&self, service: &str) -> Option<Arc<ServiceInfo>> {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        self.service_map.get(&service.to_string())
    }

    /// `setServiceInfo`.
    fn set_service_info(&self, service: &str, info: Arc<ServiceInfo>) {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        info.name.set(service.to_string());
        self.service_map.insert(service.to_string(), info);
    }

    /// `AcceptHandler`: serves the service's connections until it is stopped.
    fn accept_handler(&self, service: &str, listener: Listener) {
        let Some(info) = self.get_service_info(service) else {
            // glog: "Failed to find service"
            return;
        };
        loop {
            info.mu.lock();
            if !info.active.get() {
                info.mu.unlock();
                break;
            }
            info.mu.unlock();
            if listener.accept().is_err() {
                // glog: "Accept failed"
                continue;
            }
            // A connection would be proxied here; none comes.
        }
    }

    /// `addService`.
    fn add_service(self: &Arc<Self>, service: &str, port: u16) -> Result<Listener, Error> {
        let l = Listener::listen(&format!("listener:{port}"));
        self.add_service_common(service, l.clone());
        Ok(l)
    }

    /// `addServiceOnUnusedPort`: for tests, a service on a port the system picks.
    fn add_service_on_unused_port(self: &Arc<Self>, service: &str) -> Result<u16, Error> {
        let port = 40001;
        let l = Listener::listen(&format!("listener:{port}"));
        self.set_service_info(service, service_info(port, l.clone()));
        self.add_service_common(service, l);
        Ok(port)
    }

    /// `addServiceCommon`: starts the service's `AcceptHandler`.
    fn add_service_common(self: &Arc<Self>, service: &str, l: Listener) {
        // glog: "Listening for ..."
        let (proxier, service) = (self.clone(), service.to_string());
        go_named("AcceptHandler", move || proxier.accept_handler(&service, l));
    }

    /// `OnUpdate`: restarts the proxies whose port changed and stops the missing ones.
    fn on_update(self: &Arc<Self>, services: &[Service]) {
        // The receiver: `proxier *Proxier` after the fix; before it, `proxier Proxier`, a copy
        // made at the call, which shares `serviceMap` but has a mutex of its own.
        let proxier = if self.variant.fixed() {
            self.clone()
        } else {
            Arc::new(Proxier {
                mu: Mutex::new().named("copy of Proxier.mu"),
                service_map: self.service_map.clone(),
                variant: self.variant,
            })
        };
        // glog: "Received update notice"
        let mut active_services = BTreeSet::new();
        for service in services {
            active_services.insert(service.id.to_string());
            let info = proxier.get_service_info(service.id);
            if let Some(info) = &info {
                if info.port == service.port {
                    continue;
                }
                let _ = proxier.stop_proxy(service.id);
            }
            // glog: "Adding a new service"
            let Ok(listener) = proxier.add_service(service.id, service.port) else {
                // glog: "Failed to start listening"
                continue;
            };
            proxier.set_service_info(service.id, service_info(service.port, listener));
        }
        proxier.mu.lock();
        let _unlock = defer(|| proxier.mu.unlock());
        let infos: Vec<(String, Arc<ServiceInfo>)> = proxier
            .service_map
            .with(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
        for (name, info) in infos {
            if !active_services.contains(&name) {
                let _ = proxier.stop_proxy_internal(&info);
            }
        }
    }
}

/// `NewProxier`.
fn new_proxier(variant: Variant) -> Arc<Proxier> {
    Arc::new(Proxier {
        mu: Mutex::new().named("Proxier.mu"),
        service_map: GoMap::new().named("serviceMap"),
        variant,
    })
}

/// A proxier test of the time: a service on an unused port, an update that moves it to
/// another port, and the service stopped at the end.
fn test_kubernetes796(variant: Variant) {
    let p = new_proxier(variant);
    let proxy_port = p
        .add_service_on_unused_port("echo")
        .expect("error adding new service");
    p.on_update(&[Service {
        id: "echo",
        port: proxy_port + 1,
    }]);
    let _ = p.stop_proxy("echo");
}
