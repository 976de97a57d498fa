// Writes the SDK run's pass/fail list as JSON (committed as tests/sdk/results.json), so a diff
// shows which SDK behaviours regressed.
export default async function* reporter(source) {
  const results = [];
  for await (const event of source) {
    if (event.type === 'test:pass' || event.type === 'test:fail') {
      if (event.data.details?.type === 'suite') continue;
      results.push({
        file: event.data.file ? event.data.file.split('/').pop() : undefined,
        test: event.data.name,
        result: event.type === 'test:pass' ? 'pass' : 'fail',
      });
    }
  }
  results.sort((a, b) => (a.file + a.test).localeCompare(b.file + b.test));
  yield JSON.stringify(results, null, 2) + '\n';
}
