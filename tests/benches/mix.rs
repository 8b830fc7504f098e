//! The benchmarks' event mix: the four shipped event types (the samples in `events/api/`), with
//! varied ids, recipients, payloads (optional fields present or not, 0–3 order lines, text that
//! needs HTML escaping) and locales (none, `uk`, `uk-UA`, `en-GB`: the router's fallback rule is
//! exercised). Deterministic: the same `n` and `seed` give the same events, so the peers in
//! `bench/peers/` read exactly what ours reads (`NOTIFY_BENCH_WRITE_MIX`).

use serde_json::{Value, json};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, xs: &'a [&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }
    fn amount(&mut self) -> String {
        format!("{}.{:02}", 1 + self.below(500), self.below(100))
    }
}

const NAMES: [&str; 8] = ["Olena", "Taras", "O'Brien & Sons", "Zoë <admin>", "Ірина", "Mykola", "Ana-Maria", "Jean \"JJ\" Dupont"];
const PRODUCTS: [&str; 6] = ["Coffee beans", "Grinder", "Filter papers (100)", "Kettle <steel>", "Mug & saucer", "Чашка"];
const CURRENCIES: [&str; 4] = ["EUR", "USD", "UAH", "GBP"];
const REASONS: [&str; 4] = ["card declined", "insufficient funds", "expired card", "3-D Secure failed"];
const HEADLINES: [&str; 3] = ["What's new in December", "Quiet hours per category", "A faster inbox"];
const SUMMARIES: [&str; 3] = [
    "Scheduled sends, quiet hours per category and a faster inbox.",
    "Everything we shipped this month, in two minutes of reading.",
    "Tips & tricks: <b>bold</b> moves for your notifications.",
];

/// Event `i` of the mix as a JSON value (a valid event of a shipped type).
pub fn event(rng_seed: u64, i: usize) -> Value {
    let mut rng = Rng(rng_seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (i as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03) | 1);
    for _ in 0..3 {
        rng.next();
    }
    let kind = rng.below(100);
    let (event_type, prefix, payload) = if kind < 40 {
        let mut p = json!({"order_id": format!("A-{i}"), "total": rng.amount(), "currency": rng.pick(&CURRENCIES)});
        let lines = rng.below(4);
        if lines > 0 {
            let items: Vec<Value> = (0..lines).map(|_| json!({"name": rng.pick(&PRODUCTS), "quantity": 1 + rng.below(3)})).collect();
            p["items"] = Value::Array(items);
        }
        ("order.completed", "order", p)
    } else if kind < 65 {
        let mut p = json!({"payment_id": format!("P-{i}"), "amount": rng.amount(), "currency": rng.pick(&CURRENCIES)});
        if rng.below(2) == 0 {
            p["reason"] = json!(rng.pick(&REASONS));
        }
        if rng.below(2) == 0 {
            p["retry_url"] = json!(format!("https://example.com/billing/{i}"));
        }
        ("payment.failed", "payment", p)
    } else if kind < 85 {
        let mut p = json!({"name": rng.pick(&NAMES)});
        if rng.below(4) != 0 {
            p["verify_url"] = json!(format!("https://example.com/verify?token={:016x}&u={i}", rng.next()));
        }
        ("user.registered", "user", p)
    } else {
        let mut p = json!({"headline": rng.pick(&HEADLINES), "summary": rng.pick(&SUMMARIES)});
        if rng.below(2) == 0 {
            p["read_more_url"] = json!(format!("https://example.com/blog/{i}"));
        }
        ("marketing.newsletter", "newsletter", p)
    };
    let mut e = json!({
        "event_id": format!("evt-{prefix}-{i:06}"),
        "event_type": event_type,
        "user_id": format!("u-{}", rng.below(1000)),
        "payload": payload,
        "occurred_at": format!("2026-11-{:02}T{:02}:{:02}:00Z", 1 + rng.below(28), rng.below(24), rng.below(60)),
    });
    match rng.below(10) {
        5..=7 => e["locale"] = json!("uk"),
        8 => e["locale"] = json!("uk-UA"),
        9 => e["locale"] = json!("en-GB"),
        _ => {}
    }
    if event_type == "order.completed" && rng.below(2) == 0 {
        e["priority"] = json!("high");
    }
    e
}

/// `n` events as the bodies a producer posts.
#[allow(dead_code)]
pub fn bodies(n: usize, seed: u64) -> Vec<String> {
    (0..n).map(|i| event(seed, i).to_string()).collect()
}
