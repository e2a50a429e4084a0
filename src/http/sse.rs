//! Server-Sent Events: a channel whose receiving end is a response body.
//!
//! The producer (a turn thread) sends frames; tiny_http reads them as the body and writes each
//! as one flushed chunk. During silence the reader emits `: keep-alive` comments. The body owns
//! the producer's thread and joins it when dropped, so a worker stays occupied until its turn is
//! done even if the client disconnected (this keeps `turn_workers` a real bound on CLI runs).

use serde_json::Value;
use std::io::Read;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

/// The sending half, held by the producer.
pub struct SseSender {
    tx: Sender<Vec<u8>>,
}

impl SseSender {
    /// Sends one `data:` frame with a JSON payload; false once the client is gone.
    pub fn json(&self, value: &Value) -> bool {
        self.tx
            .send(format!("data: {value}\n\n").into_bytes())
            .is_ok()
    }

    /// Sends one named frame, `event: <name>` then `data: <json>` (the Responses API names every
    /// event; chat chunks have no name); false once the client is gone.
    pub fn event(&self, name: &str, value: &Value) -> bool {
        self.tx
            .send(format!("event: {name}\ndata: {value}\n\n").into_bytes())
            .is_ok()
    }

    /// Sends the final `data: [DONE]` frame.
    pub fn done(&self) -> bool {
        self.tx.send(b"data: [DONE]\n\n".to_vec()).is_ok()
    }
}

/// The body half: a `Read` of frames.
pub struct SseBody {
    rx: Receiver<Vec<u8>>,
    pending: Vec<u8>,
    offset: usize,
    keepalive: Duration,
    finished: bool,
    producer: Option<JoinHandle<()>>,
}

/// A connected pair.
pub fn channel_pair(keepalive: Duration) -> (SseSender, SseBody) {
    let (tx, rx) = channel();
    let body = SseBody {
        rx,
        pending: Vec::new(),
        offset: 0,
        keepalive,
        finished: false,
        producer: None,
    };
    (SseSender { tx }, body)
}

impl SseBody {
    /// Hands over the producer thread, joined when the body is dropped.
    pub fn attach(&mut self, producer: JoinHandle<()>) {
        self.producer = Some(producer);
    }
}

impl Read for SseBody {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.offset >= self.pending.len() {
            if self.finished {
                return Ok(0);
            }
            self.offset = 0;
            self.pending = match self.rx.recv_timeout(self.keepalive) {
                Ok(frame) => frame,
                Err(RecvTimeoutError::Timeout) => b": keep-alive\n\n".to_vec(),
                Err(RecvTimeoutError::Disconnected) => {
                    self.finished = true;
                    return Ok(0);
                }
            };
        }
        let n = buf.len().min(self.pending.len() - self.offset);
        buf[..n].copy_from_slice(&self.pending[self.offset..self.offset + n]);
        self.offset += n;
        Ok(n)
    }
}

impl Drop for SseBody {
    fn drop(&mut self) {
        if let Some(producer) = self.producer.take() {
            // The producer notices the closed channel only between frames; wait for its turn to end.
            let _ = producer.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_keepalives_and_end() {
        let (sender, mut body) = channel_pair(Duration::from_millis(30));
        let producer = std::thread::spawn(move || {
            sender.json(&serde_json::json!({"a": 1}));
            std::thread::sleep(Duration::from_millis(100));
            sender.done();
        });
        body.attach(producer);
        let mut text = String::new();
        body.read_to_string(&mut text).unwrap();
        assert!(text.starts_with("data: {\"a\":1}\n\n"), "{text}");
        assert!(text.contains(": keep-alive\n\n"), "{text}");
        assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    }

    #[test]
    fn named_events() {
        let (sender, mut body) = channel_pair(Duration::from_secs(5));
        let producer = std::thread::spawn(move || {
            sender.event("response.created", &serde_json::json!({"n": 0}));
        });
        body.attach(producer);
        let mut text = String::new();
        body.read_to_string(&mut text).unwrap();
        assert_eq!(text, "event: response.created\ndata: {\"n\":0}\n\n");
    }
}
