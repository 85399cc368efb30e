//! `seed`: fills the database with deterministic data, fast (multi-row inserts).

use chrono::{Duration as ChronoDuration, Utc};
use entity::prelude::*;
use entity::{follow, profile, story};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QuerySelect, Set};
use std::collections::HashSet;
use std::io::IsTerminal;
use std::time::Instant;

/// How much to make.
#[derive(Debug, Clone, Copy)]
pub struct SeedPlan {
    /// Profiles to create.
    pub profiles: u64,
    /// Stories, spread over the profiles.
    pub stories: u64,
    /// Follows, distinct pairs.
    pub follows: u64,
    /// The random seed: the same seed makes the same data.
    pub seed: u64,
}

const WORDS: &[&str] = &[
    "river", "night", "garden", "signal", "winter", "harbor", "copper", "lantern", "orbit",
    "meadow", "thunder", "echo", "silver", "forest", "desert", "voyage", "cipher", "ember",
    "glacier", "canyon", "shadow", "falcon", "marble", "comet", "tide", "ridge", "velvet", "prism",
    "quartz", "willow",
];
const GENRES: &[&str] = &[
    "fantasy", "mystery", "romance", "scifi", "horror", "poetry", "history",
];

struct Progress(Option<indicatif::ProgressBar>, &'static str, u64);

impl Progress {
    fn new(what: &'static str, total: u64) -> Self {
        if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_message(what);
            Self(Some(bar), what, total)
        } else {
            eprintln!("seed: {what}: 0/{total}");
            Self(None, what, total)
        }
    }
    fn set(&self, done: u64) {
        match &self.0 {
            Some(b) => b.set_position(done),
            None => eprintln!("seed: {}: {done}/{}", self.1, self.2),
        }
    }
    fn finish(self) {
        if let Some(b) = self.0 {
            b.finish();
        }
    }
}

fn title(rng: &mut StdRng) -> String {
    let n = rng.random_range(2..=5);
    let t: Vec<&str> = (0..n)
        .map(|_| WORDS[rng.random_range(0..WORDS.len())])
        .collect();
    let mut s = t.join(" ");
    if let Some(c) = s.get_mut(0..1) {
        c.make_ascii_uppercase();
    }
    s
}

/// Inserts the plan's rows on `db` (the primary), in batches, and returns
/// how long it took.
///
/// # Errors
///
/// The database's.
pub async fn run(db: &DatabaseConnection, plan: SeedPlan) -> Result<std::time::Duration, DbErr> {
    let start = Instant::now();
    let mut rng = StdRng::seed_from_u64(plan.seed);
    let now = Utc::now();
    let year = 365 * 24 * 3600;
    let prefix = format!("s{}_", plan.seed);

    let bar = Progress::new("profiles", plan.profiles);
    let mut done = 0;
    while done < plan.profiles {
        let n = (plan.profiles - done).min(2000);
        let rows = (done..done + n).map(|i| {
            let t = now - ChronoDuration::seconds(rng.random_range(0..year));
            profile::ActiveModel {
                username: Set(format!("{prefix}{i}")),
                display_name: Set(format!("Writer {i}")),
                bio: Set(String::new()),
                created_at: Set(t),
                updated_at: Set(t),
                ..Default::default()
            }
        });
        Profile::insert_many(rows)
            .on_conflict_do_nothing()
            .exec_without_returning(db)
            .await?;
        done += n;
        bar.set(done);
    }
    bar.finish();
    let ids: Vec<i64> = Profile::find()
        .select_only()
        .column(profile::Column::Id)
        .filter(profile::Column::Username.starts_with(&prefix))
        .into_tuple()
        .all(db)
        .await?;
    if ids.is_empty() {
        return Ok(start.elapsed());
    }

    let bar = Progress::new("stories", plan.stories);
    let mut done = 0;
    while done < plan.stories {
        let n = (plan.stories - done).min(1000);
        let rows: Vec<story::ActiveModel> = (0..n)
            .map(|_| {
                let created = now - ChronoDuration::seconds(rng.random_range(0..year));
                let published = rng.random_bool(0.7);
                story::ActiveModel {
                    author_id: Set(ids[rng.random_range(0..ids.len())]),
                    title: Set(title(&mut rng)),
                    body: Set(format!(
                        "{} {}.",
                        title(&mut rng),
                        title(&mut rng).to_lowercase()
                    )),
                    genre: Set(rng
                        .random_bool(0.8)
                        .then(|| GENRES[rng.random_range(0..GENRES.len())].to_owned())),
                    published: Set(published),
                    featured: Set(published && rng.random_bool(0.02 / 0.7)),
                    view_count: Set(rng.random_range(0..10_000)),
                    published_at: Set(published
                        .then(|| created + ChronoDuration::seconds(rng.random_range(0..3600)))),
                    created_at: Set(created),
                    updated_at: Set(created),
                    ..Default::default()
                }
            })
            .collect();
        Story::insert_many(rows).exec_without_returning(db).await?;
        done += n;
        bar.set(done);
    }
    bar.finish();

    let max_pairs = (ids.len() as u64) * (ids.len() as u64).saturating_sub(1);
    let want = plan.follows.min(max_pairs);
    let bar = Progress::new("follows", want);
    let mut seen = HashSet::with_capacity(want as usize);
    let mut done = 0;
    while done < want {
        let mut rows = Vec::with_capacity(5000);
        while rows.len() < 5000 && done + (rows.len() as u64) < want {
            let a = ids[rng.random_range(0..ids.len())];
            let b = ids[rng.random_range(0..ids.len())];
            if a != b && seen.insert((a, b)) {
                rows.push(follow::ActiveModel {
                    follower_id: Set(a),
                    following_id: Set(b),
                    created_at: Set(now - ChronoDuration::seconds(rng.random_range(0..year))),
                });
            }
        }
        done += rows.len() as u64;
        Follow::insert_many(rows)
            .on_conflict_do_nothing()
            .exec_without_returning(db)
            .await?;
        bar.set(done);
    }
    bar.finish();
    Ok(start.elapsed())
}
