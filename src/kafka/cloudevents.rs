//! CloudEvents 1.0 Kafka protocol binding, binary mode (`ce_*` headers, JSON value), and
//! the W3C `traceparent` header that carries a petition's trace across stages.

use rdkafka::message::{Header, OwnedHeaders};

pub const SPEC_VERSION: &str = "1.0";

pub struct CloudEvent<'a> {
    pub id: &'a str,
    pub source: &'a str,
    pub event_type: &'a str,
    pub time: &'a str,
    pub subject: Option<&'a str>,
    pub trace_id: &'a str,
    pub span_id: &'a str,
}

impl CloudEvent<'_> {
    pub fn headers(&self) -> OwnedHeaders {
        let traceparent = traceparent(self.trace_id, self.span_id);
        let mut headers = OwnedHeaders::new()
            .insert(h("ce_specversion", SPEC_VERSION))
            .insert(h("ce_id", self.id))
            .insert(h("ce_source", self.source))
            .insert(h("ce_type", self.event_type))
            .insert(h("ce_time", self.time))
            .insert(h("content-type", "application/json"))
            .insert(Header {
                key: "traceparent",
                value: Some(traceparent.as_bytes()),
            });
        if let Some(subject) = self.subject {
            headers = headers.insert(h("ce_subject", subject));
        }
        headers
    }
}

fn h<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a [u8]> {
    Header {
        key,
        value: Some(value.as_bytes()),
    }
}

pub fn traceparent(trace_id: &str, span_id: &str) -> String {
    format!("00-{trace_id}-{span_id}-01")
}

/// The trace id of an incoming `traceparent` header, if it is well formed and not all
/// zeros (W3C Trace Context §3.2).
pub fn trace_id_from_traceparent(value: &str) -> Option<String> {
    let mut parts = value.trim().split('-');
    let (version, trace, span, _flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    };
    if version == "ff" || !hex(version, 2) || !hex(trace, 32) || !hex(span, 16) {
        return None;
    }
    if trace.bytes().all(|b| b == b'0') {
        return None;
    }
    Some(trace.to_string())
}

pub fn new_trace_id() -> String {
    format!("{:032x}", rand::random::<u128>() | 1)
}

pub fn new_span_id() -> String {
    format!("{:016x}", rand::random::<u64>() | 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incoming_trace_ids_are_continued_only_when_valid() {
        let tid = "0af7651916cd43dd8448eb211c80319c";
        assert_eq!(
            trace_id_from_traceparent(&format!("00-{tid}-b7ad6b7169203331-01")).as_deref(),
            Some(tid)
        );
        assert_eq!(
            trace_id_from_traceparent("00-00000000000000000000000000000000-b7ad6b7169203331-01"),
            None
        );
        assert_eq!(
            trace_id_from_traceparent("00-XYZ-b7ad6b7169203331-01"),
            None
        );
        assert_eq!(trace_id_from_traceparent(""), None);
    }

    #[test]
    fn generated_ids_have_the_w3c_shape() {
        let t = new_trace_id();
        assert!(trace_id_from_traceparent(&traceparent(&t, &new_span_id())).is_some());
    }
}
