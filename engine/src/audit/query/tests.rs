use chrono::TimeZone as _;

use super::*;

#[test]
fn since_accepts_durations_and_rfc3339() {
    let now = Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).single().unwrap_or_default();
    let at = |text| parse_since_at(text, now).expect(text);
    assert_eq!(at("90s"), now - Duration::seconds(90));
    assert_eq!(at("30m"), now - Duration::minutes(30));
    assert_eq!(at("1h"), now - Duration::hours(1));
    assert_eq!(at(" 2d "), now - Duration::days(2));
    assert_eq!(
        at("2026-11-27T08:00:00+02:00"),
        Utc.with_ymd_and_hms(2026, 11, 27, 6, 0, 0).single().unwrap_or_default()
    );
    for bad in ["", "h", "1w", "-1h", "yesterday", "1.5h", "99999999999999d", "é"] {
        assert!(matches!(parse_since_at(bad, now), Err(AuditError::BadTime { .. })), "{bad:?}");
    }
}
