package realswitch

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"time"
)

// promptTones are the prompts the controller plays A (CALLBRIDGE_PROMPT_*)
// and the pitch of the tone each is made of: this FreeSWITCH has no sound
// files, and a node without the files plays A silence.
func promptTones() map[string]float64 {
	return map[string]float64{
		"CALLBRIDGE_PROMPT_HOLD":        660,
		"CALLBRIDGE_PROMPT_B_BUSY":      480,
		"CALLBRIDGE_PROMPT_B_NO_ANSWER": 620,
		"CALLBRIDGE_PROMPT_CALL_FAILED": 950,
	}
}

// PromptLength is how long each prompt of WritePrompts plays.
const PromptLength = 3 * time.Second

// WritePrompts writes the prompts as 8 kHz 16-bit mono WAV files into
// dir/sounds (FreeSWITCH's state directory) and returns the controller
// settings naming them.
func WritePrompts(dir string) (map[string]string, error) {
	sounds := filepath.Join(dir, "sounds")
	if err := os.MkdirAll(sounds, 0o755); err != nil {
		return nil, err
	}
	env := map[string]string{}
	for name, hz := range promptTones() {
		path := filepath.Join(sounds, name+".wav")
		if err := os.WriteFile(path, wav(hz, PromptLength), 0o644); err != nil {
			return nil, err
		}
		env[name] = path
	}
	return env, nil
}

// wav returns d of a sine at hz as an 8 kHz 16-bit mono PCM WAV file.
func wav(hz float64, d time.Duration) []byte {
	const rate = 8000
	n := int(d.Seconds() * rate)
	b := make([]byte, 44+2*n)
	copy(b[0:], "RIFF")
	binary.LittleEndian.PutUint32(b[4:], uint32(36+2*n))
	copy(b[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(b[16:], 16) // fmt chunk size
	binary.LittleEndian.PutUint16(b[20:], 1)  // PCM
	binary.LittleEndian.PutUint16(b[22:], 1)  // mono
	binary.LittleEndian.PutUint32(b[24:], rate)
	binary.LittleEndian.PutUint32(b[28:], 2*rate) // bytes per second
	binary.LittleEndian.PutUint16(b[32:], 2)      // bytes per frame
	binary.LittleEndian.PutUint16(b[34:], 16)     // bits per sample
	copy(b[36:], "data")
	binary.LittleEndian.PutUint32(b[40:], uint32(2*n))
	for i := 0; i < n; i++ {
		s := int16(8000 * math.Sin(2*math.Pi*hz*float64(i)/rate))
		binary.LittleEndian.PutUint16(b[44+2*i:], uint16(s))
	}
	return b
}
