package realswitch

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// TestWritePrompts checks the prompt files are the WAV FreeSWITCH plays
// without resampling: RIFF sizes right, PCM, mono, 8 kHz, 16 bits, and
// PromptLength of a loud tone.
func TestWritePrompts(t *testing.T) {
	dir := t.TempDir()
	env, err := WritePrompts(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(env) != len(promptTones()) {
		t.Fatalf("settings %v, want one per prompt", env)
	}
	for name, path := range env {
		if filepath.Dir(path) != filepath.Join(dir, "sounds") {
			t.Errorf("%s = %s, want a file in %s/sounds", name, path, dir)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		le := binary.LittleEndian
		if string(b[0:4]) != "RIFF" || string(b[8:16]) != "WAVEfmt " || string(b[36:40]) != "data" ||
			int(le.Uint32(b[4:])) != len(b)-8 || int(le.Uint32(b[40:])) != len(b)-44 {
			t.Fatalf("%s: not a well-formed WAV header: % x", name, b[:44])
		}
		format, channels, rate, bits := le.Uint16(b[20:]), le.Uint16(b[22:]), le.Uint32(b[24:]), le.Uint16(b[34:])
		if format != 1 || channels != 1 || rate != 8000 || bits != 16 {
			t.Errorf("%s: format %d, %d channels, %d Hz, %d bits; want PCM mono 8000 Hz 16 bits", name, format, channels, rate, bits)
		}
		samples := (len(b) - 44) / 2
		if samples != int(PromptLength.Seconds()*8000) {
			t.Errorf("%s: %d samples, want %v", name, samples, PromptLength)
		}
		peak := 0
		for i := 0; i < samples; i++ {
			peak = max(peak, int(int16(le.Uint16(b[44+2*i:]))))
		}
		if peak < 7000 {
			t.Errorf("%s: peak %d, want a loud tone", name, peak)
		}
	}
}
