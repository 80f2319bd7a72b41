// AudioWorklet processor: the microphone's first channel as 16-bit PCM, posted in blocks of about 100 ms.
class Pcm16Capture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.block = Math.round(sampleRate / 10);  // sampleRate is the AudioContext's (a global of the worklet scope)
    this.buffer = new Int16Array(this.block);
    this.filled = 0;
  }

  process(inputs, outputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel) {
      for (let i = 0; i < channel.length; i++) {
        const s = Math.max(-1, Math.min(1, channel[i]));
        this.buffer[this.filled++] = s < 0 ? s * 0x8000 : s * 0x7fff;
        if (this.filled === this.block) {
          this.port.postMessage(this.buffer.buffer, [this.buffer.buffer]);  // transferred, not copied
          this.buffer = new Int16Array(this.block);
          this.filled = 0;
        }
      }
    }
    return true;  // keep running; the outputs stay silent
  }
}

registerProcessor("pcm16-capture", Pcm16Capture);
