package store

import (
	"database/sql"
	"errors"
	"time"
)

// CredentialHash returns the hash of the site's agent credential (what
// signs the reports of its offline jobs).
func (t *JobTx) CredentialHash(site string) (string, error) {
	st, err := t.stmt(`SELECT credential_hash FROM sites WHERE site = ?`)
	if err != nil {
		return "", err
	}
	var h string
	err = st.QueryRow(site).Scan(&h)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	}
	return h, err
}

// SetInstalledVersion records the version an agent reported installed
// outside a check-in (the report of its offline jobs).
func (t *JobTx) SetInstalledVersion(site, version string) error {
	t.installed = append(t.installed, site)
	return t.exec(`UPDATE sites SET installed_version = ? WHERE site = ?`, version, site)
}

// NewestEventAt returns the agent's time of the newest event of the
// site's jobs whose IDs start with prefix (zero when none).
func (t *JobTx) NewestEventAt(site, prefix string) (time.Time, error) {
	st, err := t.stmt(`SELECT e.at FROM job_events e JOIN jobs j ON j.id = e.job_id WHERE j.site = ? AND substr(j.id, 1, ?) = ?`)
	if err != nil {
		return time.Time{}, err
	}
	rows, err := st.Query(site, len(prefix), prefix)
	if err != nil {
		return time.Time{}, err
	}
	defer rows.Close()
	var newest time.Time
	for rows.Next() {
		var at string
		if err := rows.Scan(&at); err != nil {
			return time.Time{}, err
		}
		if t := parseTime(at); t.After(newest) {
			newest = t
		}
	}
	return newest, rows.Err()
}
