#![doc = include_str!("kubernetes_49404.md")]

use std::sync::Arc;
use std::time::Duration;

use primitives::sync::{AtomicI32, WaitGroup};
use primitives::{defer, go_named, time, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "kubernetes_49404",
        project: "kubernetes",
        upstream: "https://github.com/kubernetes/kubernetes/pull/49404",
        category: "Data race",
        expected: primitives::Verdict::Race,
        kernel: test_kubernetes49404,
        walkthrough: include_str!("kubernetes_49404.md"),
        goker: Some("gobench/goker/nonblocking/kubernetes/49404"),
        asplos: Some("non-blocking-bugs/kubernetes/345f875c51c0acd909f206b855d158b8e3adbbb3.txt"),
        source: Source::Goker,
        fix: Fix::Upstream("345f875c"),
        review: "faithful: Checked against GoKer nonblocking/kubernetes/49404 (kernel and race report), the 345f875c diff and PR #49404: GoKer's kernel, upstream's atomic-counter fix as a switch, race verdict right.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// net/http's `Handler`.
trait Handler: Send + Sync {
    fn serve_http(&self);
}

/// `websocket.Handler`: a function that serves one websocket connection.
struct WebsocketHandler(Box<dyn Fn() + Send + Sync>);

impl Handler for WebsocketHandler {
    fn serve_http(&self) {
        (self.0)()
    }
}

/// One route of a `ServeMux`.
struct MuxEntry {
    h: Arc<dyn Handler>,
}

/// net/http's `ServeMux`, with its routes reduced to their handlers (one path here).
struct ServeMux {
    es: Vec<MuxEntry>,
}

impl ServeMux {
    fn r#match(&self) -> Option<Arc<dyn Handler>> {
        self.es.first().map(|e| e.h.clone())
    }

    fn handler(&self) -> Option<Arc<dyn Handler>> {
        self.r#match()
    }

    fn handle(&mut self, handler: Arc<dyn Handler>) {
        // `appendSorted`: with a single path, the new entry goes first.
        self.es.insert(0, MuxEntry { h: handler });
    }
}

impl Handler for ServeMux {
    fn serve_http(&self) {
        let h = self.handler().expect("the path is registered");
        h.serve_http();
    }
}

fn new_serve_mux() -> ServeMux {
    ServeMux { es: Vec::new() }
}

/// net/http's `Server` (`http_Server` in the GoKer kernel).
struct HttpServer {
    handler: Arc<dyn Handler>,
}

impl HttpServer {
    /// Accepts one connection and serves it on its own goroutine.
    fn serve(self: &Arc<Self>) {
        let c = self.new_conn();
        go_named("conn.serve", move || c.serve());
    }

    fn new_conn(self: &Arc<Self>) -> Conn {
        Conn {
            server: self.clone(),
        }
    }
}

/// A server-side connection (`conn`).
struct Conn {
    server: Arc<HttpServer>,
}

impl Conn {
    fn serve(&self) {
        // `serverHandler{c.server}.ServeHTTP()`.
        let handler = self.server.handler.clone();
        handler.serve_http();
    }
}

/// `httptest.Server`.
struct Server {
    config: Arc<HttpServer>,
    wg: WaitGroup,
}

impl Server {
    fn start_tls(&self) {
        self.go_serve();
    }

    fn go_serve(&self) {
        self.wg.add(1);
        let (wg, config) = (self.wg.clone(), self.config.clone());
        go_named("Server.goServe.func1", move || {
            let _done = defer(|| wg.done());
            config.serve();
        });
    }
}

fn new_unstarted_server(handler: Arc<dyn Handler>) -> Server {
    Server {
        config: Arc::new(HttpServer { handler }),
        wg: WaitGroup::new().named("s.wg"),
    }
}

/// What the test records about the backend being called: the `called` flag before the fix,
/// the `timesCalled` counter after it.
#[derive(Clone)]
enum Called {
    Flag(Shared<bool>),
    Count(Arc<AtomicI32>),
}

/// `TestKubernetes49404` (the body of `TestProxyUpgrade` for one test case).
fn test_kubernetes49404(variant: Variant) {
    let expect_called = true;
    let called = if variant.fixed() {
        Called::Count(Arc::new(AtomicI32::new(0)))
    } else {
        Called::Flag(Shared::new(false).named("called"))
    };
    {
        // Cleanup after each test case.
        let mut backend_handler = new_serve_mux();
        let in_handler = called.clone();
        backend_handler.handle(Arc::new(WebsocketHandler(Box::new(move || {
            match &in_handler {
                // The fix counts the call first thing in the handler, atomically.
                Called::Count(times_called) => {
                    times_called.add(1);
                }
                // Before it, the handler set a plain flag when it was done.
                Called::Flag(called) => called.set(true),
            }
        }))));

        let backend_server = new_unstarted_server(Arc::new(backend_handler));

        backend_server.start_tls();

        let _check = defer(|| {
            let was_called = match &called {
                Called::Count(times_called) => times_called.load() > 0,
                Called::Flag(called) => called.get(),
            };
            // The real test reports `t.Errorf` here; the GoKer kernel ignores the outcome.
            let _ = was_called != expect_called;
        });
    }
    time::sleep(Duration::from_millis(10));
}
