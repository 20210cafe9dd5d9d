package rating

import "sync"

// Cache holds compiled decks by deck id, the newest version seen of each,
// so that a process compiles a deck version once. Stores consult it with
// the version they read from the database; a stale entry is simply
// replaced. The zero value is ready to use; it is safe for concurrent use.
type Cache struct {
	mu    sync.Mutex
	decks map[string]*Deck
}

// Get returns the deck with the given id and version, or nil.
func (c *Cache) Get(id string, version int64) *Deck {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d := c.decks[id]; d != nil && d.info.Version == version {
		return d
	}
	return nil
}

// Put stores d under its id unless a newer version is already cached.
func (c *Cache) Put(d *Deck) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.decks == nil {
		c.decks = map[string]*Deck{}
	}
	if old := c.decks[d.info.ID]; old == nil || old.info.Version <= d.info.Version {
		c.decks[d.info.ID] = d
	}
}

// Forget drops a deck, e.g. after it was deleted.
func (c *Cache) Forget(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.decks, id)
}
