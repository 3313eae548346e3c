//! The app's persisted choices (name, devices, relay, recent links) in a TOML file in the XDG
//! config directory, written with mode 0600. Recent links are stored without their secret
//! fragment ([`InviteLink::without_secret`]: `#k` / `#p` with no value), so the file never holds
//! a room secret; a saved link needs the full invite link again to join. The relay's access
//! token (`t=`, a credential for the relay, not for the room) is kept: in the relay settings
//! and in saved links.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vcall_crypto::{InviteLink, LinkError};

/// How many recent links the lobby remembers.
pub const MAX_RECENT_LINKS: usize = 5;

/// Which capture or playback device to use.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "name")]
pub enum DeviceChoice {
    /// The system's default device, or the built-in fallback when there is none.
    #[default]
    Auto,
    /// A device by its name as listed by the system.
    Device(String),
    /// The built-in generator: the test pattern (camera) or a tone (microphone).
    TestSource,
    /// Nothing: camera off, microphone silent, received audio not played.
    Off,
}

impl DeviceChoice {
    /// Parses a command-line value: `auto`, `none`/`off`, the generator's names (`testsrc` for
    /// cameras, `tone` for microphones; both accepted everywhere) or a device name.
    pub fn from_cli(value: &str) -> Self {
        match value.trim() {
            "" | "auto" | "default" => Self::Auto,
            "none" | "off" => Self::Off,
            "testsrc" | "test" | "tone" => Self::TestSource,
            name => Self::Device(name.to_owned()),
        }
    }
}

/// Everything the app remembers between launches.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub display_name: String,
    pub camera: DeviceChoice,
    pub microphone: DeviceChoice,
    pub speaker: DeviceChoice,
    /// `HOST:PORT` of a relay to host calls on; empty for the relay embedded in the app.
    pub relay_address: String,
    /// SHA-256 fingerprint (hex) of that relay's self-signed certificate; empty when the relay
    /// has a certificate from a public CA.
    pub relay_fingerprint: String,
    /// That relay's access token (`t=` in the links it makes), for a relay in token mode;
    /// empty for an open relay. Given by the relay's operator (`vcall-relay token issue`).
    pub relay_token: String,
    /// Most recent first, without their secrets (see [`storable_link`]).
    pub recent_links: Vec<String>,
    /// Show the per-tile statistics overlay.
    pub show_stats: bool,
}

impl Settings {
    /// Puts `link`, without its secret, first in the recent links, without duplicates,
    /// keeping at most [`MAX_RECENT_LINKS`]. A link that is not valid is not remembered.
    pub fn remember_link(&mut self, link: &str) {
        let Some(link) = storable_link(link) else {
            return;
        };
        self.recent_links.retain(|known| *known != link);
        self.recent_links.insert(0, link);
        self.recent_links.truncate(MAX_RECENT_LINKS);
    }

    /// Removes the secret from every recent link (and drops those that cannot be read, as
    /// they may hide one); true when something changed, e.g. in a file of an older version.
    pub fn strip_link_secrets(&mut self) -> bool {
        let before = self.recent_links.clone();
        let mut stripped: Vec<String> = Vec::with_capacity(before.len());
        for link in before.iter().filter_map(|link| storable_link(link)) {
            if !stripped.contains(&link) {
                stripped.push(link);
            }
        }
        self.recent_links = stripped;
        self.recent_links != before
    }

    /// The relay access token for new calls: [`Settings::relay_token`] trimmed, or the `t=` of
    /// an invite link pasted there instead; `None` when empty. A malformed token is returned
    /// as is, so that making the link reports it.
    pub fn relay_access_token(&self) -> Option<String> {
        let token = self.relay_token.trim();
        if token.is_empty() {
            return None;
        }
        if token.starts_with("vcall://") {
            // A pasted link: its token, if it has one. Parsed without its fragment, so a saved
            // link (`#k`) works too; a link that does not parse is handed on as is, so that
            // making the invite reports what is wrong with it.
            let without_fragment = token.split('#').next().unwrap_or_default();
            return match InviteLink::parse(without_fragment) {
                Ok(link) => link.access_token,
                Err(_) => Some(token.to_owned()),
            };
        }
        Some(token.to_owned())
    }

    /// True when calls are hosted on the relay embedded in the app.
    pub fn uses_embedded_relay(&self) -> bool {
        self.relay_address.trim().is_empty()
    }
}

/// `link` as it may be saved: without its secret fragment (`#k=…` becomes `#k`, `#p=…` becomes
/// `#p`); a link already saved that way stays; `None` for a link that cannot be parsed.
pub fn storable_link(link: &str) -> Option<String> {
    let link = link.trim();
    match InviteLink::parse(link) {
        Ok(parsed) => Some(parsed.without_secret()),
        Err(LinkError::SecretRemoved) => Some(link.to_owned()),
        Err(_) => None,
    }
}

/// Why settings could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("no home or config directory is known for this user")]
    NoConfigDir,
    #[error("could not read or write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid settings TOML: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("settings could not be encoded: {0}")]
    Encode(#[from] toml::ser::Error),
}

/// Where the settings live and how they are read and written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsStore {
    path: PathBuf,
}

impl SettingsStore {
    /// `$XDG_CONFIG_HOME/vcall/settings.toml` (or the platform's equivalent).
    pub fn in_user_config_dir() -> Result<Self, SettingsError> {
        let dirs =
            directories::ProjectDirs::from("", "", "vcall").ok_or(SettingsError::NoConfigDir)?;
        Ok(Self::at(dirs.config_dir().join("settings.toml")))
    }

    /// A store at an explicit path (tests, `--settings`).
    pub fn at(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The settings file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the settings; a missing file gives the defaults.
    pub fn load(&self) -> Result<Settings, SettingsError> {
        let text = match fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Settings::default());
            }
            Err(source) => return Err(self.io_error(source)),
        };
        toml::from_str(&text).map_err(|source| SettingsError::Parse {
            path: self.path.clone(),
            source,
        })
    }

    /// Writes the settings atomically (temporary file + rename), readable only by the user:
    /// the directory gets mode 0700 when created and the file mode 0600. Recent links are
    /// written without their secrets whatever `settings` holds.
    pub fn save(&self, settings: &Settings) -> Result<(), SettingsError> {
        let mut settings = settings.clone();
        settings.strip_link_secrets();
        let text = toml::to_string_pretty(&settings)?;
        if let Some(dir) = self.path.parent() {
            create_private_dir(dir).map_err(|source| self.io_error(source))?;
        }
        let temporary = self.path.with_extension("toml.tmp");
        write_private_file(&temporary, text.as_bytes()).map_err(|source| self.io_error(source))?;
        fs::rename(&temporary, &self.path).map_err(|source| self.io_error(source))
    }

    fn io_error(&self, source: std::io::Error) -> SettingsError {
        SettingsError::Io {
            path: self.path.clone(),
            source,
        }
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.as_os_str().is_empty() || dir.exists() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.as_os_str().is_empty() {
        return Ok(());
    }
    fs::create_dir_all(dir)
}

#[cfg(unix)]
fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // A file left by an older version may have wider permissions: narrow them.
    file.set_permissions(fs::Permissions::from_mode(0o600))?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = fs::File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_gives_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let store = SettingsStore::at(dir.path().join("absent/settings.toml"));
        assert_eq!(store.load().unwrap(), Settings::default());
    }

    #[test]
    fn save_then_load_round_trips_with_private_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let store = SettingsStore::at(dir.path().join("vcall/settings.toml"));
        let mut settings = Settings {
            display_name: "Ada".into(),
            camera: DeviceChoice::TestSource,
            microphone: DeviceChoice::Device("USB Mic".into()),
            speaker: DeviceChoice::Off,
            relay_address: "relay.example.org:4433".into(),
            relay_token: "v4.public.team-a".into(),
            ..Settings::default()
        };
        settings.remember_link("vcall://h:1/r");
        store.save(&settings).unwrap();
        assert_eq!(store.load().unwrap(), settings);

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let file_mode = fs::metadata(store.path()).unwrap().permissions().mode();
            assert_eq!(file_mode & 0o777, 0o600);
            let dir_mode = fs::metadata(store.path().parent().unwrap())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(dir_mode & 0o777, 0o700);
        }
    }

    #[cfg(unix)]
    #[test]
    fn save_narrows_permissions_of_an_existing_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.toml");
        fs::write(&path, "display_name = \"old\"\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let store = SettingsStore::at(&path);
        assert_eq!(store.load().unwrap().display_name, "old");
        store.save(&Settings::default()).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn the_relay_token_is_read_as_typed_or_from_a_pasted_link() {
        let with = |token: &str| Settings {
            relay_token: token.into(),
            ..Settings::default()
        };
        assert_eq!(with("").relay_access_token(), None);
        assert_eq!(with("  ").relay_access_token(), None);
        assert_eq!(
            with(" v4.public.abc ").relay_access_token().as_deref(),
            Some("v4.public.abc")
        );
        let fp = "ab".repeat(32);
        let link = format!("vcall://relay.example.org:4433/r?fp={fp}&t=v4.public.xyz#k=SECRET");
        assert_eq!(
            with(&link).relay_access_token().as_deref(),
            Some("v4.public.xyz")
        );
        let saved = "vcall://relay.example.org:4433/r?t=v4.public.xyz#k";
        assert_eq!(
            with(saved).relay_access_token().as_deref(),
            Some("v4.public.xyz")
        );
        assert_eq!(with("vcall://h:1/r#t=no").relay_access_token(), None);
        // A link that does not parse is handed on, so that making the invite says why.
        let broken = "vcall://h:1/r?t=a b";
        assert_eq!(with(broken).relay_access_token().as_deref(), Some(broken));
        // A file from before the token existed still loads, with no token.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.toml");
        fs::write(&path, "relay_address = \"h:1\"\n").unwrap();
        assert_eq!(SettingsStore::at(&path).load().unwrap().relay_token, "");
    }

    #[test]
    fn saved_links_keep_their_access_token() {
        let mut settings = Settings::default();
        settings.remember_link(
            "vcall://h:1/r?t=v4.public.abc#k=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
        );
        assert_eq!(settings.recent_links, ["vcall://h:1/r?t=v4.public.abc#k"]);
    }

    #[test]
    fn corrupt_file_is_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.toml");
        fs::write(&path, "display_name = [").unwrap();
        assert!(matches!(
            SettingsStore::at(&path).load(),
            Err(SettingsError::Parse { .. })
        ));
    }

    #[test]
    fn recent_links_are_deduplicated_and_capped() {
        let mut settings = Settings::default();
        for n in 0..8 {
            settings.remember_link(&format!("vcall://h:1/room{n}"));
        }
        settings.remember_link("vcall://h:1/room5");
        settings.remember_link("  ");
        assert_eq!(settings.recent_links.len(), MAX_RECENT_LINKS);
        assert_eq!(settings.recent_links[0], "vcall://h:1/room5");
        assert_eq!(
            settings
                .recent_links
                .iter()
                .filter(|l| l.ends_with("room5"))
                .count(),
            1
        );
    }

    const KEY: &str = "BwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAhIiMkJSY";
    const PASSPHRASE: &str = "correct-horse-battery-staple-orbit-lantern";

    #[test]
    fn recent_links_are_remembered_without_their_secret() {
        let mut settings = Settings::default();
        settings.remember_link(&format!("vcall://h:1/keyed?fp={}#k={KEY}", "ab".repeat(32)));
        settings.remember_link(&format!("vcall://h:1/spoken#p={PASSPHRASE}"));
        settings.remember_link("vcall://h:1/open");
        settings.remember_link("not a link #k=whatever");
        assert_eq!(
            settings.recent_links,
            vec![
                "vcall://h:1/open".to_owned(),
                "vcall://h:1/spoken#p".to_owned(),
                format!("vcall://h:1/keyed?fp={}#k", "ab".repeat(32)),
            ]
        );
        // A remembered link is refused until the secret is pasted again.
        assert!(matches!(
            InviteLink::parse(&settings.recent_links[1]),
            Err(LinkError::SecretRemoved)
        ));
        // Remembering the stripped link again does not duplicate it.
        let stripped = settings.recent_links[2].clone();
        settings.remember_link(&stripped);
        assert_eq!(settings.recent_links.len(), 3);
        assert_eq!(settings.recent_links[0], stripped);
    }

    #[test]
    fn secrets_in_an_older_file_are_removed_and_never_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.toml");
        fs::write(
            &path,
            format!(
                "recent_links = [\"vcall://h:1/a#k={KEY}\", \"vcall://h:1/b#p={PASSPHRASE}\", \"vcall://h:1/a#k={KEY}\", \"junk#k=x\"]\n"
            ),
        )
        .unwrap();
        let store = SettingsStore::at(&path);
        let mut loaded = store.load().unwrap();
        // Saving what was loaded, untouched, already writes no secret.
        store.save(&loaded).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(!text.contains(KEY) && !text.contains(PASSPHRASE), "{text}");
        assert!(!text.contains("#k=") && !text.contains("#p="), "{text}");
        assert!(loaded.strip_link_secrets());
        assert_eq!(
            loaded.recent_links,
            vec!["vcall://h:1/a#k".to_owned(), "vcall://h:1/b#p".to_owned()]
        );
        assert!(!loaded.strip_link_secrets(), "nothing left to strip");
        assert_eq!(store.load().unwrap(), loaded);
    }

    #[test]
    fn cli_values_map_to_choices() {
        assert_eq!(DeviceChoice::from_cli("testsrc"), DeviceChoice::TestSource);
        assert_eq!(DeviceChoice::from_cli("tone"), DeviceChoice::TestSource);
        assert_eq!(DeviceChoice::from_cli("none"), DeviceChoice::Off);
        assert_eq!(DeviceChoice::from_cli("auto"), DeviceChoice::Auto);
        assert_eq!(
            DeviceChoice::from_cli("/dev/video2"),
            DeviceChoice::Device("/dev/video2".into())
        );
    }
}
