//! The migrations are embedded at compile time (`embed_migrations!`), which tracks the files
//! it read but not new folders: rebuild when anything under `migrations/` changes.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
