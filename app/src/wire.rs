//! The JSON shapes of API.md. Entities are not the wire types: these render
//! timestamps as RFC 3339 in UTC.

use chrono::{DateTime, SecondsFormat, Utc};
use entity::{follow, profile, story};
use serde::Serialize;
use utoipa::ToSchema;

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A profile.
#[derive(Debug, Serialize, ToSchema)]
pub struct Profile {
    #[schema(minimum = 1)]
    id: i64,
    username: String,
    display_name: String,
    bio: String,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
}

impl From<profile::Model> for Profile {
    fn from(m: profile::Model) -> Self {
        Self {
            id: m.id,
            username: m.username,
            display_name: m.display_name,
            bio: m.bio,
            created_at: ts(m.created_at),
            updated_at: ts(m.updated_at),
        }
    }
}

/// A story.
#[derive(Debug, Serialize, ToSchema)]
pub struct Story {
    #[schema(minimum = 1)]
    id: i64,
    #[schema(minimum = 1)]
    author_id: i64,
    title: String,
    body: String,
    #[schema(required)]
    genre: Option<String>,
    published: bool,
    featured: bool,
    #[schema(minimum = 0)]
    view_count: i64,
    #[schema(required, format = DateTime)]
    published_at: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
}

impl From<story::Model> for Story {
    fn from(m: story::Model) -> Self {
        Self {
            id: m.id,
            author_id: m.author_id,
            title: m.title,
            body: m.body,
            genre: m.genre,
            published: m.published,
            featured: m.featured,
            view_count: m.view_count,
            published_at: m.published_at.map(ts),
            created_at: ts(m.created_at),
            updated_at: ts(m.updated_at),
        }
    }
}

/// A follow.
#[derive(Debug, Serialize, ToSchema)]
pub struct Follow {
    #[schema(minimum = 1)]
    follower_id: i64,
    #[schema(minimum = 1)]
    following_id: i64,
    #[schema(format = DateTime)]
    created_at: String,
}

impl From<follow::Model> for Follow {
    fn from(m: follow::Model) -> Self {
        Self {
            follower_id: m.follower_id,
            following_id: m.following_id,
            created_at: ts(m.created_at),
        }
    }
}

/// Counts for a profile.
#[derive(Debug, Serialize, ToSchema)]
pub struct Stats {
    /// Stories written.
    pub story_count: u64,
    /// Of which published.
    pub published_story_count: u64,
    /// Profiles following it.
    pub follower_count: u64,
    /// Profiles it follows.
    pub following_count: u64,
}

/// A page of items.
#[derive(Debug, Serialize, ToSchema)]
pub struct List<T> {
    items: Vec<T>,
    #[schema(minimum = 1, maximum = 100)]
    limit: u64,
    #[schema(minimum = 0, maximum = 100000)]
    offset: u64,
}

impl<T> List<T> {
    /// Whether the page has no items.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Wraps converted items with the page they are.
    pub fn new<M: Into<T>>(items: Vec<M>, page: crate::extract::Page) -> Self {
        Self {
            items: items.into_iter().map(Into::into).collect(),
            limit: page.limit,
            offset: page.offset,
        }
    }
}
