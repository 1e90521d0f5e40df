package log

// SetConfig applies a changed topic configuration (AlterConfigs). Segment
// size and age apply from the next roll, retention from the next
// enforcement. An invalid configuration leaves the old one in place.
func (l *Log) SetConfig(cfg Config) error {
	c, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	c.Tail = l.cfg.Tail // the write mode is fixed when the log opens
	l.cfg = c
	return nil
}
