//! Preference losses with soft labels (work in progress).
