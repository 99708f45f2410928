#![doc = include_str!("kubernetes_47157.md")]

use std::sync::Arc;
use std::time::Duration;

use primitives::sync::{Mutex, WaitGroup};
use primitives::time;
use primitives::{defer, go_named, select, Chan, GoMap};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "kubernetes_47157",
        project: "kubernetes",
        upstream: "https://github.com/kubernetes/kubernetes/pull/47157",
        category: "Order violation (stop without waiting)",
        expected: primitives::Verdict::Assert,
        kernel: test_kubernetes47157,
        walkthrough: include_str!("kubernetes_47157.md"),
        goker: None,
        asplos: Some("non-blocking-bugs/kubernetes/79d3d795b512de861c01847fe75c4fc43d2d4f2d.txt"),
        source: Source::Diff("79d3d795"),
        fix: Fix::Upstream("79d3d795"),
        review: "faithful: Checked against 79d3d795 (ASPLOS diff), PR #47157's thread and mid-2017 copies of `test/e2e/common/autoscaling_utils.go` in the index: same stop-without-wait order with the real poll/ExpectNoError failure path, all cuts admitted, fix hunks mapped.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `serviceInitializationTimeout`.
const SERVICE_INITIALIZATION_TIMEOUT: Duration = Duration::from_secs(2 * 60);
/// `serviceInitializationInterval`.
const SERVICE_INITIALIZATION_INTERVAL: Duration = Duration::from_secs(15);

/// The cluster behind the e2e framework's client set: the objects the API server holds (by
/// kind and name), one request at a time.
struct ApiServer {
    lock: Mutex,
    objects: GoMap<String, ()>,
}

impl ApiServer {
    fn create(&self, key: String) {
        self.lock.lock();
        self.objects.insert(key, ());
        self.lock.unlock();
    }

    fn delete(&self, key: &str) {
        self.lock.lock();
        self.objects.remove(&key.to_string());
        self.lock.unlock();
    }

    /// A request proxied to the pods behind a service: it fails once the service or its
    /// pods are gone.
    fn proxy(&self, service: &str) -> Result<(), String> {
        self.lock.lock();
        let _unlock = defer(|| self.lock.unlock());
        let up = self.objects.contains_key(&format!("service/{service}"))
            && self.objects.contains_key(&format!("rc/{service}"));
        if up {
            Ok(())
        } else {
            Err(format!("service {service} not found"))
        }
    }
}

/// `ResourceConsumer` (`test/e2e/common/autoscaling_utils.go`), with its CPU consumer only.
struct ResourceConsumer {
    name: String,
    controller_name: String,
    /// `framework.ClientSet`: the way to the cluster.
    framework: Arc<ApiServer>,
    cpu: Chan<i32>,
    stop_cpu: Chan<i32>,
    /// Added by the fix.
    stop_wait_group: WaitGroup,
    sleep_time: Duration,
    variant: Variant,
}

/// `newResourceConsumer`: starts the consumer's workload and controller, then its CPU
/// consumer goroutine, and sets the initial consumption.
fn new_resource_consumer(
    name: &str,
    init_cpu_total: i32,
    consumption_time_in_seconds: u64,
    f: Arc<ApiServer>,
    variant: Variant,
) -> Arc<ResourceConsumer> {
    run_service_and_workload_for_resource_consumer(&f, name);
    let rc = Arc::new(ResourceConsumer {
        name: name.to_string(),
        controller_name: format!("{name}-ctrl"),
        framework: f,
        cpu: Chan::new(0).named("cpu"),
        stop_cpu: Chan::new(0).named("stopCPU"),
        stop_wait_group: WaitGroup::new().named("stopWaitGroup"),
        sleep_time: Duration::from_secs(consumption_time_in_seconds),
        variant,
    });
    let r = rc.clone();
    go_named("makeConsumeCPURequests", move || {
        r.make_consume_cpu_requests()
    });
    rc.consume_cpu(init_cpu_total);
    rc
}

/// `runServiceAndWorkloadForResourceConsumer`: the consumer's service and pods, and the
/// controller's service and pods, which the CPU requests go through.
fn run_service_and_workload_for_resource_consumer(f: &ApiServer, name: &str) {
    f.create(format!("service/{name}"));
    f.create(format!("rc/{name}"));
    let controller_name = format!("{name}-ctrl");
    f.create(format!("service/{controller_name}"));
    f.create(format!("rc/{controller_name}"));
}

impl ResourceConsumer {
    /// `ConsumeCPU`.
    fn consume_cpu(&self, millicores: i32) {
        self.cpu.send(millicores);
    }

    /// `makeConsumeCPURequests`: every `sleepTime`, asks the controller to consume the
    /// current amount of CPU; stops when `stopCPU` says so.
    fn make_consume_cpu_requests(&self) {
        if self.variant.fixed() {
            self.stop_wait_group.add(1);
        }
        let _done = defer(|| {
            if self.variant.fixed() {
                self.stop_wait_group.done();
            }
        });
        let mut sleep_time = Duration::ZERO;
        let mut millicores = 0;
        loop {
            select! {
                recv(self.cpu) -> m => {
                    millicores = m.unwrap_or(0);
                    // Logf: "setting consumption to %v millicores in total"
                },
                recv(time::after(sleep_time)) => {
                    // Logf: "sending request to consume %d millicores"
                    self.send_consume_cpu_request(millicores);
                    sleep_time = self.sleep_time;
                },
                recv(self.stop_cpu) => {
                    // Logf: "stopping CPU consumer"
                    return;
                },
            }
        }
    }

    /// `sendConsumeCPURequest`: the proxied POST to the controller, retried by
    /// `wait.PollImmediate` until it succeeds or the time is up; `framework.ExpectNoError`
    /// on the outcome.
    fn send_consume_cpu_request(&self, _millicores: i32) {
        let start = time::now();
        let err = loop {
            match self.framework.proxy(&self.controller_name) {
                Ok(()) => break None,
                Err(_err) => {
                    // Logf: "ConsumeCPU failure"
                }
            }
            if time::since(start) >= SERVICE_INITIALIZATION_TIMEOUT {
                break Some("timed out waiting for the condition");
            }
            time::sleep(SERVICE_INITIALIZATION_INTERVAL);
        };
        assert_eq!(err, None, "ExpectNoError");
    }

    /// `CleanUp`: stops the consumer, then deletes its workload and controller.
    fn clean_up(&self) {
        // By: "Removing consuming RC"
        self.stop_cpu.close();
        if self.variant.fixed() {
            self.stop_wait_group.wait();
        }
        // Wait some time to ensure all child goroutines are finished.
        time::sleep(Duration::from_secs(10));
        let f = &self.framework;
        f.delete(&format!("rc/{}", self.name));
        f.delete(&format!("service/{}", self.name));
        f.delete(&format!("rc/{}", self.controller_name));
        f.delete(&format!("service/{}", self.controller_name));
    }
}

/// An e2e test that uses a resource consumer: it makes one and, when done, cleans it up.
fn test_kubernetes47157(variant: Variant) {
    let f = Arc::new(ApiServer {
        lock: Mutex::new().named("apiserver"),
        objects: GoMap::new().named("objects"),
    });
    let rc = new_resource_consumer("rc", 250, 30, f, variant);
    rc.clean_up();
}
