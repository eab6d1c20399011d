package role

import "net/http"

// consolePage is the admin listener's page: the console. Everything it
// draws comes from /status/series.json and /status/console.json on the
// same listener, by its own script: nothing is loaded from elsewhere (the
// Content-Security-Policy says so to the browser too). The status
// sections in full are at /status/.
func (a *Admin) consolePage(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:")
	h.Set("X-Frame-Options", "DENY")
	_, _ = w.Write([]byte(consoleHTML))
}

const consoleHTML = `<!doctype html>
<html><head><meta charset="utf-8"><title>terminator console</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
:root{--bg:#0f1419;--panel:#182028;--line:#2a3540;--text:#d8dee4;--dim:#8b98a5;--ok:#3fb950;--bad:#f85149;--warn:#d29922;--accent:#58a6ff}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--text);font:13px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif}
header{display:flex;align-items:center;gap:16px;padding:10px 20px;background:var(--panel);border-bottom:1px solid var(--line);position:sticky;top:0;z-index:2}
header h1{font-size:15px;margin:0;font-weight:600;letter-spacing:.02em}
header a{color:var(--accent);text-decoration:none;margin-left:10px}
#ready{padding:2px 10px;border-radius:10px;font-weight:600}
#ready.ok{background:#12361c;color:var(--ok)}#ready.bad{background:#3d1517;color:var(--bad)}
#updated{color:var(--dim);margin-left:auto;white-space:nowrap;overflow:hidden;text-overflow:ellipsis;max-width:40%}
#parts{white-space:nowrap;overflow:hidden;text-overflow:ellipsis;min-width:0;flex:1}
main{padding:16px 20px;display:grid;gap:16px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(160px,1fr));gap:12px}
.card{background:var(--panel);border:1px solid var(--line);border-radius:8px;padding:10px 14px}
.card .k{color:var(--dim);font-size:12px}.card .v{font-size:24px;font-weight:600;font-variant-numeric:tabular-nums}
.card .s{color:var(--dim);font-size:11px}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(280px,1fr));gap:12px}
.chart{background:var(--panel);border:1px solid var(--line);border-radius:8px;padding:8px 10px}
.chart h2,.panel h2{font-size:13px;margin:0 0 4px;font-weight:600}
.chart svg{width:100%;height:150px;display:block}
.chart .grid{stroke:var(--line);stroke-width:1}
.chart text{fill:var(--dim);font-size:10px}
.chart polyline{fill:none;stroke-width:1.6;vector-effect:non-scaling-stroke}
.legend{display:flex;flex-wrap:wrap;gap:4px 12px;margin-top:8px}
.legend span{display:inline-flex;align-items:center;gap:5px;color:var(--dim)}
.legend i{width:10px;height:3px;border-radius:2px;display:inline-block}
.panel{background:var(--panel);border:1px solid var(--line);border-radius:8px;padding:10px 14px;overflow-x:auto}
.row2{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:16px}
table{border-collapse:collapse;width:100%}
th{color:var(--dim);font-weight:500;text-align:left;border-bottom:1px solid var(--line);padding:4px 8px}
td{padding:4px 8px;border-bottom:1px solid #1f2a33;vertical-align:top;font-variant-numeric:tabular-nums}
td code{color:#c9d1d9;font-size:12px}
.nw{white-space:nowrap}
code.reply{display:block;max-width:190px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.ok{color:var(--ok)}.bad{color:var(--bad)}.warn{color:var(--warn)}.dim{color:var(--dim)}
.count{background:#2d333b;border-radius:9px;padding:0 7px;font-weight:600}
.pct{display:inline-flex;align-items:center;gap:8px}.pct .bar{width:120px;display:inline-block}
.bar{height:6px;background:#2d333b;border-radius:3px;min-width:80px;overflow:hidden}.bar b{display:block;height:100%;background:var(--accent)}
button{background:#21262d;color:var(--text);border:1px solid #3b444d;border-radius:6px;padding:2px 10px;cursor:pointer;font:inherit}
button:hover{border-color:var(--accent)}
#msg{color:var(--warn)}
input{background:#0d1117;color:var(--text);border:1px solid #3b444d;border-radius:6px;padding:2px 6px;font:inherit;width:140px}
</style></head>
<body>
<header><h1>terminator</h1><span id="ready">…</span><span id="parts" class="dim"></span>
<span id="updated"></span>
<span><input id="token" type="password" placeholder="admin token" title="sent as a bearer token with the console's actions (not needed when the browser already signed in)">
<a href="status/">status</a><a href="status.json">status.json</a><a href="debug/pprof/">pprof</a></span></header>
<main>
<div class="cards" id="cards"></div>
<div class="charts" id="charts"></div>
<div class="row2">
<section class="panel"><h2>Fleet <span class="dim" id="fleetn"></span></h2><div id="fleet"></div></section>
<section class="panel"><h2>Rollouts</h2><div id="rollouts"></div><h2 style="margin-top:12px">Feature flags</h2><div id="flags"></div><div id="msg"></div></section>
</div>
<div class="row2">
<section class="panel"><h2>Ghost differences</h2><div id="ghosts"></div></section>
<section class="panel" id="hospitalp"><h2>Event hospital</h2><div id="hospital"></div></section>
</div>
</main>
<script>
"use strict";
const colors=["#58a6ff","#3fb950","#d29922","#f778ba","#a371f7","#79c0ff","#ffa657","#56d4dd","#e3b341","#ff7b72"];
const charts=[
 {id:"rate",title:"Requests / s",col:1,fmt:v=>num(v)},
 {id:"errors",title:"Errors (5xx) / s",col:2,fmt:v=>num(v)},
 {id:"latency",title:"Latency ms: p99, p50 dashed",col:4,col2:3,fmt:v=>ms(v)},
 {id:"limit",title:"Admission limit",col:5,fmt:v=>num(v)},
];
const $=id=>document.getElementById(id);
function esc(s){return String(s==null?"":s).replace(/[&<>"']/g,c=>({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;","'":"&#39;"})[c])}
function num(v){return v>=1e6?(v/1e6).toFixed(1)+"M":v>=1e4?(v/1e3).toFixed(1)+"k":v>=100?v.toFixed(0):v>=10?v.toFixed(1):v.toFixed(2).replace(/\.?0+$/,"")||"0"}
function nice(v){if(!(v>0))return 1;const p=Math.pow(10,Math.floor(Math.log10(v)));for(const m of [1,1.5,2,3,5,7.5,10])if(v<=m*p)return m*p;return 10*p}
function ms(v){return v>=100?v.toFixed(0):v>=1?v.toFixed(1):v.toFixed(2)}
function ago(t){const s=Math.max(0,(Date.now()-new Date(t))/1000);return s<90?s.toFixed(0)+"s":s<5400?(s/60).toFixed(0)+"m":(s/3600).toFixed(1)+"h"}
function headers(extra){const h=Object.assign({},extra||{});const t=$("token").value||sessionStorage.getItem("token");if(t){h["Authorization"]="Bearer "+t}return h}
// Absolute, without the user:password a page opened as http://user:token@host/ has in its own URL:
// fetch refuses a URL with credentials, and the browser sends what it signed in with anyway.
function url(path){return location.origin+location.pathname.replace(/[^/]*$/,"")+path}
async function get(path){const r=await fetch(url(path),{headers:headers(),cache:"no-store"});if(!r.ok)throw new Error(path+": "+r.status+" "+(await r.text()).trim());return r.json()}

for(const c of charts){const d=document.createElement("div");d.className="chart";d.innerHTML='<h2>'+c.title+'</h2><svg id="svg-'+c.id+'" role="img" aria-label="'+c.title+'"></svg><div class="legend" id="lg-'+c.id+'"></div>';$("charts").appendChild(d)}

function draw(c,series,now){
 const svg=$("svg-"+c.id),W=Math.max(200,svg.clientWidth||600),H=150,L=44,B=16,T=6,span=300000;
 svg.setAttribute("viewBox","0 0 "+W+" "+H);
 let max=0;for(const s of series)for(const p of s.samples)max=Math.max(max,p[c.col]);
 max=nice(max*1.1);
 let g="";
 for(let i=0;i<=3;i++){const y=T+(H-B-T)*i/3;g+='<line class="grid" x1="'+L+'" x2="'+W+'" y1="'+y+'" y2="'+y+'"/><text x="'+(L-4)+'" y="'+(y+3)+'" text-anchor="end">'+c.fmt(max*(3-i)/3)+'</text>'}
 for(let m=0;m<=5;m++){const x=L+(W-L)*(1-m*60000/span);g+='<text x="'+x+'" y="'+(H-3)+'" text-anchor="'+(m==0?"end":"middle")+'">'+(m==0?"now":"-"+m+"m")+'</text>'}
 let lg="";
 // Drawn last first: the front's line lies on top of those it hides.
 let lines=[];
 series.forEach((s,i)=>{
  const col=colors[i%colors.length];let g="";
  const pts=s.samples.filter(p=>now-p[0]<=span).map(p=>{const x=L+(W-L)*(1-(now-p[0])/span),y=T+(H-B-T)*(1-p[c.col]/max);return x.toFixed(1)+","+y.toFixed(1)});
  if(pts.length)g+='<polyline class="series" data-series="'+esc(s.name)+'" data-points="'+pts.length+'" stroke="'+col+'" points="'+pts.join(" ")+'"/>';
  if(c.col2){const p2=s.samples.filter(p=>now-p[0]<=span).map(p=>{const x=L+(W-L)*(1-(now-p[0])/span),y=T+(H-B-T)*(1-p[c.col2]/max);return x.toFixed(1)+","+y.toFixed(1)});
   if(p2.length)g+='<polyline class="series p50" stroke-dasharray="3 3" stroke-opacity=".7" data-series="'+esc(s.name)+'" stroke="'+col+'" points="'+p2.join(" ")+'"/>'}
  lines.push(g);
  const last=s.samples.length?s.samples[s.samples.length-1][c.col]:0;
  lg+='<span><i style="background:'+col+'"></i>'+esc(s.name)+' '+c.fmt(last)+'</span>';
 });
 $("svg-"+c.id).innerHTML=g+lines.reverse().join("");$("lg-"+c.id).innerHTML=lg;
}

function cards(series){
 const main=series[0];if(!main){$("cards").innerHTML="";return}
 const last=main.samples[main.samples.length-1]||[0,0,0,0,0,0];
 const recent=main.samples.slice(-60);let req=0,err=0;for(const p of recent){req+=p[1];err+=p[2]}
 const pct=req>0?100*err/req:0;
 const r5=main.samples.slice(-5),rate=r5.reduce((a,p)=>a+p[1],0)/Math.max(1,r5.length);
 const c=[["requests / s",num(rate),main.name+", last 5 s"],["errors, last minute",pct.toFixed(2)+"%",num(err)+" of "+num(req)],
  ["p99",ms(last[4])+" ms","p50 "+ms(last[3])+" ms"],["admission limit",num(last[5]),main.name]];
 $("cards").innerHTML=c.map(([k,v,s],i)=>'<div class="card"><div class="k">'+k+'</div><div class="v'+(i==1&&pct>1?" bad":"")+'">'+v+'</div><div class="s">'+esc(s)+'</div></div>').join("");
}

function table(cols,rows,empty){
 if(!rows.length)return '<p class="dim">'+empty+'</p>';
 return '<table><tr>'+cols.map(c=>'<th>'+c+'</th>').join("")+'</tr>'+rows.map(r=>'<tr>'+r.map(c=>'<td>'+c+'</td>').join("")+'</tr>').join("")+'</table>';
}

function render(c){
 const rd=$("ready");rd.className=c.ready?"ok":"bad";rd.textContent=c.ready?"ready":"not ready";rd.title=c.reason||"";
 $("parts").textContent=(c.sections||[]).filter(s=>s!="admin"&&s!="node:terminator").map(s=>s.replace(/^node:/,"")).join(" · ");
 const st=s=>s=="connected"?'<span class="ok">connected</span>':s=="down"?'<span class="bad">down</span>':'<span class="dim">'+s+'</span>';
 $("fleetn").textContent=c.fleet.length+" instances";
 $("fleet").innerHTML=(c.fleet_error?'<p class="bad">'+esc(c.fleet_error)+'</p>':'')+table(["service","version","weight","state","bus","admin","up"],
  c.fleet.map(f=>[esc(f.service),'<code>'+esc(f.version)+'</code>',f.weight<0?'<span class="dim">–</span>':f.weight,st(f.state),'<code>'+esc(f.bus)+'</code>',
   f.admin?'<code>'+esc(f.admin)+'</code>':'<span class="dim">–</span>',ago(f.started)]),"no instance registered");
 $("rollouts").innerHTML=table(["service","weights","ghost","ramp"],c.rollouts.map(r=>{
  let ramp='<span class="dim">–</span>';
  // A ramp that ended holds the weights it left (all back on From after a rollback): the bar shows To's share now.
  if(r.ramp){const p=r.ramp,share=p.state=="running"?p.percent:((r.weights||{})[p.To]||0);ramp=esc(p.From)+' → '+esc(p.To)+' <b>'+share+'%</b> (step '+(p.step+1)+'/'+p.steps.length+', '+esc(p.state)+' '+p.since+')'+
   '<div class="bar"><b style="width:'+share+'%"></b></div>'+(p.note?'<span class="dim">'+esc(p.note)+'</span>':'')+(p.reason?'<span class="warn">'+esc(p.reason)+'</span>':'')+
   (p.state=="running"?' <button class="stop-ramp" data-service="'+esc(r.service)+'">stop ramp</button>':'')}
  return [esc(r.service),Object.entries(r.weights||{}).map(([v,w])=>'<code>'+esc(v)+'</code>='+w).join(" ")||'<span class="dim">even</span>',esc(r.ghost)||'<span class="dim">–</span>',ramp]}),"no rollout policy: calls spread evenly over every version");
 $("flags").innerHTML=table(["flag","on for","by"],c.flags.map(f=>[esc(f.name),'<span class="pct"><span class="bar" title="'+f.percent+'%"><b style="width:'+f.percent+'%"></b></span>'+f.percent+'%</span>',esc(f.by)||'<span class="dim">–</span>']),"no feature flag set");
 $("ghosts").innerHTML=table(["","route","differs","live (newest)","ghost","last"],c.ghosts.map(g=>['<span class="count">×'+g.count+'</span>','<span class="nw" title="'+g.Differing+' of '+g.Ghosted+' ghosted calls differ">'+esc(g.service)+' '+esc(g.route)+'</span>',esc(g.what),'<code class="reply" title="'+esc(g.live)+'">'+esc(g.live)+'</code>','<code class="reply" title="'+esc(g.ghost)+'">'+esc(g.ghost)+'</code>',ago(g.last)+'&nbsp;ago']),"no ghost difference");
 if(c.hospital){const h=c.hospital;
  $("hospital").innerHTML='<p><b class="'+(h.patients.length?"bad":"ok")+'">'+h.patients.length+' in the hospital</b> · '+h.parked+' parked since start'+Object.entries(h.by_state).map(([k,v])=>' · '+esc(k)+' '+v).join("")+'</p>'+
   (h.errors||[]).map(e=>'<p class="bad">'+esc(e)+'</p>').join("")+
   table(["patient","handler","state","attempts","last error","parked"],h.patients.map(p=>['<code>'+esc(p.id)+'</code>',esc(p.handler),esc(p.state),p.attempts,esc(p.last_error),ago(p.parked)+' ago']),"nobody parked");
 }else{$("hospitalp").style.display="none"}
 const t=c.truncated||{};if(Object.keys(t).length)$("msg").textContent="left out: "+Object.entries(t).map(([k,v])=>v+" "+k).join(", ");
}

document.addEventListener("click",async e=>{
 const b=e.target.closest("button.stop-ramp");if(!b)return;
 const svc=b.dataset.service;b.disabled=true;
 try{const r=await fetch(url("actions/ramp/stop"),{method:"POST",headers:headers({"X-Terminator-Console":"1","Content-Type":"application/x-www-form-urlencoded"}),body:"service="+encodeURIComponent(svc)});
  const t=(await r.text()).trim();$("msg").textContent=r.ok?"ramp of "+svc+" stopped":"refused ("+r.status+"): "+t;document.body.dataset.lastAction=r.status;
 }catch(err){$("msg").textContent=String(err)}
 tick();
});
$("token").addEventListener("change",e=>sessionStorage.setItem("token",e.target.value));

let busy=false,since=0;const kept=new Map();
async function tick(){
 if(busy)return;busy=true;
 try{
  const [s,c]=await Promise.all([get("status/series.json?since="+since),get("status/console.json")]);
  const now=Date.now();
  // Only the samples taken since the last look come: keep the rest here.
  for(const x of s.series){
   const have=kept.get(x.name)||[];
   for(const p of x.samples){have.push(p);since=Math.max(since,p[0])}
   kept.set(x.name,have.filter(p=>now-p[0]<=300000));
  }
  const series=s.series.map(x=>({name:x.name,samples:kept.get(x.name)}));
  for(const ch of charts)draw(ch,series,now);
  cards(series);render(c);
  $("updated").textContent="updated "+new Date().toLocaleTimeString();document.body.dataset.updated=now;
 }catch(err){$("updated").innerHTML='<span class="bad">'+esc(err.message)+'</span>'}
 busy=false;
}
tick();setInterval(tick,2000);
</script>
</body></html>
`
