//! The body of an alert action: a reason read strictly.

use super::*;

#[test]
fn a_reason_is_read_and_a_key_named_twice_is_refused_naming_it() {
    assert_eq!(reason_of(b"").unwrap(), None);
    assert_eq!(reason_of(br#"{"reason": "seen at the bedside"}"#).unwrap().as_deref(), Some("seen at the bedside"));
    // Read as its last value, this would record a reason the clinician did not mean.
    let refused = reason_of(br#"{"reason": "false alarm", "reason": "patient transferred"}"#).unwrap_err();
    assert_eq!(refused.kind, "json_invalid");
    assert!(refused.msg.contains("\"reason\" appears twice"), "{}", refused.msg);
    assert_eq!(reason_of(b"[1]").unwrap_err().kind, "object_type");
}
