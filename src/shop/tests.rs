//! The shop's own logic without a server: what a purchase body asks for
//! (and the 400 for what it cannot), and the arrivals of a race's first
//! purchases. `tests/it/http*.rs` race the shop for real.

use std::time::{Duration, Instant};

use super::{field, order_of, Arrivals, Order};

#[test]
fn an_empty_body_is_the_default_order() {
    let default = Order {
        product: 1,
        qty: 1,
        buyer: 0,
        attempt: None,
        named: false,
    };
    assert_eq!(order_of(b""), Ok(default));
    assert_eq!(
        order_of(b" \n\t"),
        Ok(Order {
            product: 1,
            qty: 1,
            buyer: 0,
            attempt: None,
            named: false
        })
    );
    assert_eq!(
        order_of(b"{}"),
        Ok(Order {
            product: 1,
            qty: 1,
            buyer: 0,
            attempt: None,
            named: false
        })
    );
}

#[test]
fn every_field_is_read_and_null_is_absent() {
    let o = order_of(br#"{"product": 3, "qty": 2, "buyer": 17, "attempt": 40}"#).unwrap();
    assert_eq!(
        o,
        Order {
            product: 3,
            qty: 2,
            buyer: 17,
            attempt: Some(40),
            named: true
        }
    );
    let o = order_of(br#"{"qty": null, "attempt": null, "note": "ignored"}"#).unwrap();
    assert_eq!((o.qty, o.attempt, o.named), (1, None, false));
    // A buyer named null is still named: its arrival counts, as buyer 0.
    let o = order_of(br#"{"buyer": null}"#).unwrap();
    assert_eq!((o.buyer, o.named), (0, true));
}

#[test]
fn what_cannot_be_an_order_is_named() {
    let e = order_of(b"buyer=1").unwrap_err();
    assert!(e.starts_with("the body is not JSON: "), "{e}");
    let e = order_of(br#"{"qty": "2"}"#).unwrap_err();
    assert_eq!(e, r#"`qty` must be an integer, got "2""#);
    let e = order_of(br#"{"buyer": 1.5}"#).unwrap_err();
    assert_eq!(e, "`buyer` must be an integer, got 1.5");
    assert_eq!(
        field(&serde_json::json!({"product": [1]}), "product").unwrap_err(),
        "`product` must be an integer, got [1]"
    );
}

#[test]
fn arrivals_keep_each_buyers_first_purchase() {
    let t0 = Instant::now();
    let mut a = Arrivals {
        race: 3,
        ..Arrivals::default()
    };
    assert_eq!(a.spread(), (0, None));
    assert_eq!(a.line(), None, "no purchase, no line");
    assert_eq!(
        a.summary(),
        serde_json::json!({"race": 3, "buyers": 0, "first_purchase_spread_us": null})
    );
    a.note(1, t0 + Duration::from_micros(500));
    assert_eq!(a.spread(), (1, Some(Duration::ZERO)));
    a.note(2, t0 + Duration::from_micros(200));
    a.note(3, t0 + Duration::from_micros(1_450));
    // A buyer's later purchases do not move its first.
    a.note(1, t0 + Duration::from_micros(9_000));
    a.note(2, t0 + Duration::from_micros(100));
    assert_eq!(a.spread(), (3, Some(Duration::from_micros(1_250))));
    assert_eq!(
        a.summary(),
        serde_json::json!({"race": 3, "buyers": 3, "first_purchase_spread_us": 1250})
    );
    assert_eq!(
        a.line().as_deref(),
        Some("racelab serve: race 3: the first purchases of 3 buyers arrived within 1250 µs")
    );
}
