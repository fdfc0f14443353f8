//! The synthetic product story `warren generate` tells: people arrive over
//! the days, browse in sessions, some sign up (identifying themselves, so
//! their earlier anonymous events join them) and some of those buy. Every
//! person's events come from their own seeded random stream, so a dataset
//! is the same for the same seed, however it is written.

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc, Weekday};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};
use uuid::Uuid;

/// What the story is made of.
#[derive(Debug, Clone)]
pub struct Story {
    pub seed: u64,
    pub users: usize,
    pub days: u32,
    /// First day, UTC.
    pub start: NaiveDate,
    /// Share of people who sign up during their first session.
    pub signup_rate: f64,
    /// Share of those who buy within ten days of signing up.
    pub purchase_rate: f64,
}

/// One event of the story.
#[derive(Debug, Clone)]
pub struct StoryEvent {
    pub uuid: Uuid,
    pub event: String,
    pub distinct_id: String,
    pub timestamp: DateTime<Utc>,
    pub properties: Map<String, Value>,
}

/// One person's events in time order, and the id they sign up with.
#[derive(Debug, Clone)]
pub struct StoryPerson {
    /// The id they identify with when they sign up.
    pub user_id: Option<String>,
    pub events: Vec<StoryEvent>,
}

fn pick<'a, T>(rng: &mut StdRng, weighted: &'a [(T, u32)]) -> &'a T {
    let total: u32 = weighted.iter().map(|(_, w)| w).sum();
    let mut at = rng.random_range(0..total);
    for (value, weight) in weighted {
        if at < *weight {
            return value;
        }
        at -= weight;
    }
    &weighted[weighted.len() - 1].0
}

const BROWSERS: &[(&str, u32)] =
    &[("Chrome", 62), ("Safari", 20), ("Firefox", 9), ("Microsoft Edge", 7), ("Opera", 2)];
const OPERATING_SYSTEMS: &[(&str, u32)] =
    &[("Windows", 38), ("Mac OS X", 22), ("iOS", 18), ("Android", 16), ("Linux", 6)];
const COUNTRIES: &[(&str, u32)] = &[
    ("US", 34),
    ("IN", 11),
    ("DE", 9),
    ("GB", 9),
    ("FR", 7),
    ("BR", 7),
    ("JP", 6),
    ("CA", 5),
    ("NL", 4),
    ("AU", 4),
    ("ES", 4),
];
const SOURCES: &[(Option<&str>, u32)] = &[
    (None, 45),
    (Some("google"), 30),
    (Some("twitter"), 8),
    (Some("newsletter"), 10),
    (Some("hacker_news"), 7),
];
const PAGES: &[(&str, u32)] = &[
    ("/", 30),
    ("/pricing", 14),
    ("/docs", 16),
    ("/docs/getting-started", 9),
    ("/blog", 8),
    ("/blog/launch", 5),
    ("/features", 10),
    ("/about", 4),
    ("/careers", 2),
    ("/changelog", 2),
];
const HOST: &str = "https://warren.example";

impl Story {
    /// The person with index `i` (0-based), deterministic in (seed, i).
    pub fn person(&self, i: usize) -> StoryPerson {
        // StdRng is reproducible for a given rand version, which the lock
        // file pins; that is all a seed promises here.
        let mut rng = StdRng::seed_from_u64(self.seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let browser = *pick(&mut rng, BROWSERS);
        let os = *pick(&mut rng, OPERATING_SYSTEMS);
        let country = *pick(&mut rng, COUNTRIES);
        let source = *pick(&mut rng, SOURCES);
        let anonymous_id = format!("anon-{}-{i}", self.seed);
        let first_day = rng.random_range(0..self.days.max(1)) as i64;
        let engagement: f64 = rng.random_range(0.2..1.6);
        let signs_up = rng.random_bool(self.signup_rate.clamp(0.0, 1.0));
        let buys = signs_up && rng.random_bool(self.purchase_rate.clamp(0.0, 1.0));
        let buy_after_days = rng.random_range(0..10i64);

        let mut person = StoryPerson { user_id: None, events: Vec::new() };
        let mut distinct_id = anonymous_id.clone();
        let mut signup_day = None;
        let mut bought = false;
        for day in first_day..self.days as i64 {
            let date = self.start + Duration::days(day);
            let weekend = matches!(date.weekday(), Weekday::Sat | Weekday::Sun);
            let since = (day - first_day) as f64;
            let chance = if day == first_day {
                1.0
            } else {
                (0.5 * engagement * 0.97f64.powf(since) * if weekend { 0.55 } else { 1.0 }).min(0.9)
            };
            if !rng.random_bool(chance) {
                continue;
            }
            let sessions = if rng.random_bool(0.2) { 2 } else { 1 };
            for session in 0..sessions {
                let hour = (rng.random_range(7..23) + session * 3).min(23);
                let mut at = date
                    .and_hms_opt(hour as u32, rng.random_range(0..60), rng.random_range(0..60))
                    .unwrap_or_default()
                    .and_utc();
                let session_id = Uuid::from_u128(rng.random());
                let views = rng.random_range(1..=8);
                for view in 0..views {
                    let page = if day == first_day && view == 0 { "/" } else { *pick(&mut rng, PAGES) };
                    let mut properties =
                        self.common(browser, os, country, source, &session_id, day == first_day);
                    properties.insert("$current_url".into(), json!(format!("{HOST}{page}")));
                    properties.insert("$pathname".into(), json!(page));
                    self.push(&mut person, &mut rng, "$pageview", &distinct_id, at, properties);
                    if rng.random_bool(0.15) {
                        let mut properties = self.common(browser, os, country, source, &session_id, false);
                        properties.insert(
                            "button".into(),
                            json!(*pick(&mut rng, &[("cta", 5), ("menu", 3), ("search", 2)])),
                        );
                        self.push(
                            &mut person,
                            &mut rng,
                            "clicked_button",
                            &distinct_id,
                            at + Duration::seconds(20),
                            properties,
                        );
                    }
                    at += Duration::seconds(rng.random_range(30..300));
                }
                if day == first_day && session == 0 && signs_up {
                    let user_id = format!("user-{}-{i}@example.com", self.seed);
                    let mut properties = self.common(browser, os, country, source, &session_id, false);
                    properties.insert("$anon_distinct_id".into(), json!(anonymous_id));
                    properties.insert("$set".into(), json!({"email": user_id, "plan": "free"}));
                    self.push(&mut person, &mut rng, "$identify", &user_id, at, properties);
                    let mut properties = self.common(browser, os, country, source, &session_id, false);
                    properties.insert("plan".into(), json!("free"));
                    self.push(
                        &mut person,
                        &mut rng,
                        "signed_up",
                        &user_id,
                        at + Duration::seconds(5),
                        properties,
                    );
                    distinct_id = user_id.clone();
                    person.user_id = Some(user_id);
                    signup_day = Some(day);
                }
                if buys && !bought && signup_day.is_some_and(|d| day >= d + buy_after_days) {
                    let mut properties = self.common(browser, os, country, source, &session_id, false);
                    let amount = *pick(&mut rng, &[(19, 5), (49, 3), (99, 2)]);
                    properties.insert("amount".into(), json!(amount));
                    properties.insert("$set".into(), json!({"plan": "paid"}));
                    self.push(
                        &mut person,
                        &mut rng,
                        "purchase",
                        &distinct_id,
                        at + Duration::seconds(30),
                        properties,
                    );
                    bought = true;
                }
            }
        }
        person.events.sort_by_key(|e| e.timestamp);
        person
    }

    fn common(
        &self,
        browser: &str,
        os: &str,
        country: &str,
        source: Option<&str>,
        session: &Uuid,
        with_utm: bool,
    ) -> Map<String, Value> {
        let mut properties = Map::new();
        properties.insert("$browser".into(), json!(browser));
        properties.insert("$os".into(), json!(os));
        properties.insert("$geoip_country_code".into(), json!(country));
        properties.insert("$session_id".into(), json!(session.to_string()));
        properties.insert("$lib".into(), json!("warren-generate"));
        if let (true, Some(source)) = (with_utm, source) {
            properties.insert("utm_source".into(), json!(source));
        }
        properties
    }

    fn push(
        &self,
        person: &mut StoryPerson,
        rng: &mut StdRng,
        event: &str,
        distinct_id: &str,
        at: DateTime<Utc>,
        properties: Map<String, Value>,
    ) {
        person.events.push(StoryEvent {
            uuid: uuid::Builder::from_random_bytes(rng.random()).into_uuid(),
            event: event.to_string(),
            distinct_id: distinct_id.to_string(),
            timestamp: at,
            properties,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn story() -> Story {
        Story {
            seed: 7,
            users: 500,
            days: 28,
            start: NaiveDate::from_ymd_opt(2024, 1, 1).unwrap_or_default(),
            signup_rate: 0.4,
            purchase_rate: 0.3,
        }
    }

    #[test]
    fn the_same_seed_tells_the_same_story() {
        let (a, b) = (story().person(42), story().person(42));
        assert_eq!(a.events.len(), b.events.len());
        assert!(a.events.iter().zip(&b.events).all(|(x, y)| x.uuid == y.uuid && x.timestamp == y.timestamp));
        assert_ne!(story().person(43).events[0].uuid, a.events[0].uuid);
    }

    #[test]
    fn rates_come_out_near_what_was_asked() {
        let s = story();
        let people: Vec<StoryPerson> = (0..s.users).map(|i| s.person(i)).collect();
        let signed = people.iter().filter(|p| p.user_id.is_some()).count() as f64 / s.users as f64;
        assert!((0.33..0.47).contains(&signed), "signup share {signed}");
        let events: usize = people.iter().map(|p| p.events.len()).sum();
        assert!(events > s.users * 10, "{events} events");
        for p in &people {
            assert!(p.events.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
        }
    }
}
