#![doc = include_str!("moby_22985.md")]

use std::sync::Arc;

use primitives::sync::RwMutex;
use primitives::{defer, go_named, select, Chan, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "moby_22985",
        project: "moby",
        upstream: "https://github.com/moby/moby/pull/22985",
        category: "Data race (slice shared through a channel and reused)",
        expected: primitives::Verdict::Race,
        kernel: test_collect_batch_max_total_bytes,
        walkthrough: include_str!("moby_22985.md"),
        goker: None,
        asplos: Some("non-blocking-bugs/docker/c1ad02ccc8791b3c517aa37223d27792863cbf17.txt"),
        source: Source::Test("moby/moby daemon/logger/awslogs/cloudwatchlogs_test.go @ c1ad02cc^"),
        fix: Fix::Upstream("c1ad02cc"),
        review: "faithful: Checked against moby c1ad02cc (PR #22985, merge dca92044) and cloudwatchlogs.go/mock/TestCollectBatchMaxTotalBytes at c1ad02cc^: same reused-backing-array race through the mock's channel, fix is upstream's copy; the added second result (avoiding upstream's own leak) is admitted; nothing unadmitted.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `perEventBytes`, `maximumBytesPerEvent` and `maximumBytesPerPut`, scaled down from 26,
/// 262144 - 26 and 1048576 with the same ratio: four full events fill a put.
const PER_EVENT_BYTES: usize = 1;
const MAXIMUM_BYTES_PER_EVENT: usize = 5;
const MAXIMUM_BYTES_PER_PUT: usize = 4 * (MAXIMUM_BYTES_PER_EVENT + PER_EVENT_BYTES);

/// `*cloudwatchlogs.InputLogEvent`.
type InputLogEvent = Arc<String>;

/// A Go slice of `*InputLogEvent`: a backing array, shared by every copy of the slice, and a
/// length. `append` writes in place while the array has room.
#[derive(Clone)]
struct Slice {
    array: Arc<Vec<Shared<Option<InputLogEvent>>>>,
    len: usize,
}

impl Slice {
    fn nil() -> Slice {
        Slice {
            array: Arc::new(Vec::new()),
            len: 0,
        }
    }

    fn with_cap(cap: usize) -> Slice {
        Slice {
            array: Arc::new(
                (0..cap)
                    .map(|_| Shared::new(None).named("LogEvents[]"))
                    .collect(),
            ),
            len: 0,
        }
    }

    /// `s[i]`.
    fn index(&self, i: usize) -> InputLogEvent {
        assert!(i < self.len, "index out of range");
        self.array[i].get().expect("set by append")
    }

    /// `s[:0]`.
    fn truncate(&self) -> Slice {
        Slice {
            array: self.array.clone(),
            len: 0,
        }
    }

    /// `append(s, e)`: grows as Go does (doubling) when the array is full.
    fn append(self, e: InputLogEvent) -> Slice {
        let mut s = self;
        if s.len == s.array.len() {
            let grown = Slice::with_cap((2 * s.len).max(1));
            for i in 0..s.len {
                grown.array[i].set(Some(s.index(i)));
            }
            s = Slice {
                array: grown.array,
                len: s.len,
            };
        }
        s.array[s.len].set(Some(e));
        s.len += 1;
        s
    }
}

/// `cloudwatchlogs.PutLogEventsInput`.
#[derive(Clone)]
struct PutLogEventsInput {
    log_events: Slice,
    sequence_token: Option<String>,
}

/// `mockcwlogsclient`, built with `newMockClientBuffered(1)`.
struct MockCwLogsClient {
    put_log_events_argument: Chan<PutLogEventsInput>,
    put_log_events_result: Chan<Option<String>>,
    variant: Variant,
}

impl MockCwLogsClient {
    /// `PutLogEvents`: hands the argument to the test, returns the result the test queued.
    fn put_log_events(&self, input: PutLogEventsInput) -> Option<String> {
        if self.variant.fixed() {
            let mut events = Slice::with_cap(input.log_events.len);
            for i in 0..input.log_events.len {
                events = events.append(input.log_events.index(i));
            }
            self.put_log_events_argument.send(PutLogEventsInput {
                log_events: events,
                sequence_token: input.sequence_token.clone(),
            });
        } else {
            self.put_log_events_argument.send(input);
        }
        self.put_log_events_result.recv().expect("never closed")
    }
}

/// `logger.Message`.
struct Message {
    line: String,
}

/// awslogs' `logStream`.
struct LogStream {
    client: MockCwLogsClient,
    sequence_token: Shared<Option<String>>,
    messages: Chan<Message>,
    lock: RwMutex,
    closed: Shared<bool>,
}

impl LogStream {
    /// `Log`.
    fn log(&self, msg: Message) {
        self.lock.rlock();
        let _unlock = defer(|| self.lock.runlock());
        if !self.closed.get() {
            self.messages.send(msg);
        }
    }

    /// `Close`.
    fn close(&self) {
        self.lock.lock();
        let _unlock = defer(|| self.lock.unlock());
        if !self.closed.get() {
            self.messages.close();
        }
        self.closed.set(true);
    }

    /// `collectBatch`: batches messages into puts by time, count and size.
    fn collect_batch(&self, ticks: Chan<()>) {
        let mut events = Slice::nil();
        let mut bytes = 0;
        loop {
            select! {
                recv(ticks) => {
                    self.publish_batch(&events);
                    events = events.truncate();
                    bytes = 0;
                },
                recv(self.messages) -> msg => {
                    let Some(msg) = msg else {
                        self.publish_batch(&events);
                        return;
                    };
                    let mut unprocessed_line = msg.line.as_str();
                    while !unprocessed_line.is_empty() {
                        // Split line length so it does not exceed the maximum
                        let line_bytes = unprocessed_line.len().min(MAXIMUM_BYTES_PER_EVENT);
                        let (line, rest) = unprocessed_line.split_at(line_bytes);
                        unprocessed_line = rest;
                        if bytes + line_bytes + PER_EVENT_BYTES > MAXIMUM_BYTES_PER_PUT {
                            // Publish the batch before it goes over the maximum.
                            self.publish_batch(&events);
                            events = events.truncate();
                            bytes = 0;
                        }
                        events = events.append(Arc::new(line.to_string()));
                        bytes += line_bytes + PER_EVENT_BYTES;
                    }
                },
            }
        }
    }

    /// `publishBatch`.
    fn publish_batch(&self, events: &Slice) {
        if events.len == 0 {
            return;
        }
        let next = self.put_log_events(events, self.sequence_token.get());
        self.sequence_token.set(next);
    }

    /// `putLogEvents`.
    fn put_log_events(&self, events: &Slice, sequence_token: Option<String>) -> Option<String> {
        let input = PutLogEventsInput {
            log_events: events.clone(),
            sequence_token,
        };
        self.client.put_log_events(input)
    }
}

/// `TestCollectBatchMaxTotalBytes` (daemon/logger/awslogs/cloudwatchlogs_test.go).
fn test_collect_batch_max_total_bytes(variant: Variant) {
    let stream = Arc::new(LogStream {
        client: MockCwLogsClient {
            put_log_events_argument: Chan::new(1).named("putLogEventsArgument"),
            put_log_events_result: Chan::new(1).named("putLogEventsResult"),
            variant,
        },
        sequence_token: Shared::new(Some("sequenceToken".to_string())).named("sequenceToken"),
        messages: Chan::new(0).named("messages"),
        lock: RwMutex::new().named("stream.lock"),
        closed: Shared::new(false).named("stream.closed"),
    });
    stream
        .client
        .put_log_events_result
        .send(Some("nextSequenceToken".to_string()));
    // Not in upstream's test: a result for the second put, so collectBatch can return (see
    // Deviations).
    let queue_second = {
        let s = stream.clone();
        move || {
            s.client
                .put_log_events_result
                .send(Some("token2".to_string()))
        }
    };
    // newTicker returns a ticker on `ticks`, which the test never sends on.
    let ticks: Chan<()> = Chan::new(0).named("ticks");
    {
        let s = stream.clone();
        go_named("collectBatch", move || s.collect_batch(ticks));
    }
    let longline = "A".repeat(MAXIMUM_BYTES_PER_PUT);
    stream.log(Message {
        line: longline + "B",
    });
    // no ticks
    stream.close();

    let argument = stream.client.put_log_events_argument.recv().expect("a put");
    let mut bytes = 0;
    for i in 0..argument.log_events.len {
        bytes += argument.log_events.index(i).len();
    }
    assert!(
        bytes <= MAXIMUM_BYTES_PER_PUT,
        "Expected <= {MAXIMUM_BYTES_PER_PUT} bytes but was {bytes}"
    );

    queue_second();
    let argument = stream.client.put_log_events_argument.recv().expect("a put");
    assert_eq!(
        argument.log_events.len, 1,
        "Expected LogEvents to contain 1 elements"
    );
    let message = argument.log_events.index(0);
    assert!(
        message.ends_with('B'),
        "Expected message to be B but was {message}"
    );
}
